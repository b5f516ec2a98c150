//! The HTTP contract's error cases, through the front door: always a 4xx with
//! `{"error":{"code","message"}}`, never a panic.

mod common;

use serde_json::{Value, json};

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error shape expected, got {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_json_errors() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 10)]).await;

    // Identity.
    let creds = json!({"email": "Dup@Example.com", "password": "long enough pw"});
    assert_eq!(
        app.send("POST", "/users", None, Some(creds.clone()))
            .await
            .0,
        201
    );
    let (s, b) = app
        .send(
            "POST",
            "/users",
            None,
            Some(json!({"email": "dup@example.com", "password": "long enough pw"})),
        )
        .await;
    assert_eq!((s, code(&b)), (409, "email_taken"));
    let (s, b) = app
        .send(
            "POST",
            "/users",
            None,
            Some(json!({"email": "not-an-email", "password": "long enough pw"})),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_request"));
    let (s, b) = app
        .send(
            "POST",
            "/users",
            None,
            Some(json!({"email": "short@example.com", "password": "short"})),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_request"));
    let (s, b) = app
        .send(
            "POST",
            "/sessions",
            None,
            Some(json!({"email": "dup@example.com", "password": "wrong password"})),
        )
        .await;
    assert_eq!((s, code(&b)), (401, "invalid_credentials"));

    let token = app.user().await;
    let other = app.user().await;
    let item = |q: u64| json!({"items": [{"product_id": "sku-a", "quantity": q}], "payment_token": "tok_visa"});

    // Orders: authentication, by the session authorizer as API Gateway runs it (its own
    // answers: 401 without the header, 403 for a token it denies).
    let (s, b) = app.send("POST", "/orders", None, Some(item(1))).await;
    assert_eq!((s, b), (401, json!({"message": "Unauthorized"})));
    let (s, b) = app
        .send("POST", "/orders", Some("ofs_not-a-session"), Some(item(1)))
        .await;
    assert_eq!((s, b), (403, json!({"message": "Forbidden"})));

    // Orders: validation.
    let (s, b) = app
        .raw("POST", "/orders", Some(&token), "{\"items\": [")
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_request"));
    let (s, b) = app
        .raw(
            "POST",
            "/orders",
            Some(&token),
            r#"{"items": "many", "payment_token": "tok_visa"}"#,
        )
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_request"));
    for q in [0, 1001, 1_000_000_000_000] {
        let (s, b) = app
            .send("POST", "/orders", Some(&token), Some(item(q)))
            .await;
        assert_eq!((s, code(&b)), (400, "invalid_request"), "quantity {q}");
    }
    let lines: Vec<Value> = (0..101)
        .map(|i| json!({"product_id": format!("sku-{i}"), "quantity": 1}))
        .collect();
    let (s, b) = app
        .send(
            "POST",
            "/orders",
            Some(&token),
            Some(json!({"items": lines, "payment_token": "tok_visa"})),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_request"));
    let (s, b) = app.send("POST", "/orders", Some(&token), Some(json!({"items": [{"product_id": "sku-a", "quantity": 1}], "payment_token": "4242424242424242"}))).await;
    assert_eq!((s, code(&b)), (400, "invalid_request"));
    let (s, b) = app.send("POST", "/orders", Some(&token), Some(json!({"items": [{"product_id": "sku-nope", "quantity": 1}], "payment_token": "tok_visa"}))).await;
    assert_eq!((s, code(&b)), (422, "unknown_product"));

    // Orders: ownership.
    let id = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 1}]),
            "tok_visa",
        )
        .await;
    let (s, b) = app
        .send("GET", &format!("/orders/{id}"), Some(&other), None)
        .await;
    assert_eq!((s, code(&b)), (404, "not_found"));
    let (s, b) = app
        .send("GET", "/orders/not-a-uuid", Some(&token), None)
        .await;
    assert_eq!((s, code(&b)), (404, "not_found"));
    let (s, _) = app
        .send("GET", &format!("/orders/{id}"), Some(&token), None)
        .await;
    assert_eq!(s, 200);

    // Logout kills the token.
    assert_eq!(
        app.send("DELETE", "/sessions/current", Some(&token), None)
            .await
            .0,
        204
    );
    let (s, b) = app
        .send("GET", &format!("/orders/{id}"), Some(&token), None)
        .await;
    assert_eq!((s, code(&b)), (401, "unauthorized"));

    // Stock reads.
    let (s, b) = app
        .send("GET", "/products/sku-missing/stock", None, None)
        .await;
    assert_eq!((s, code(&b)), (404, "not_found"));
    let (s, b) = app.send("GET", "/stock", None, None).await;
    assert_eq!((s, code(&b)), (400, "invalid_request"));
    let (s, b) = app.send("GET", "/nowhere", None, None).await;
    assert_eq!((s, code(&b)), (404, "not_found"));

    app.verify().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_grants_only_the_configured_origins_and_preflights_skip_the_authorizer() {
    let db = shared::testing::fresh_database().await;
    let cfg = common::config(&db, &shared::testing::random_prefix());
    let app = common::start_with_cors(cfg, "https://shop.example").await;
    let ask = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/orders", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, idempotency-key",
            )
            .send()
    };
    // A preflight carries no Authorization header; on a protected route it must still be
    // answered (by the door, as API Gateway does), not refused by the authorizer.
    let ok = ask("https://shop.example").await.expect("HTTP");
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let allowed_headers = ok.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        allowed_headers.contains("idempotency-key"),
        "{allowed_headers}"
    );
    let evil = ask("https://evil.example").await.expect("HTTP");
    assert!(!evil.headers().contains_key("access-control-allow-origin"));

    // Real answers, errors included, carry the allowance for the allowed origin only.
    for (origin, granted) in [
        ("https://shop.example", true),
        ("https://evil.example", false),
    ] {
        let resp = app
            .http
            .post(format!("{}/orders", app.base))
            .header("origin", origin)
            .json(&json!({}))
            .send()
            .await
            .expect("HTTP");
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers().contains_key("access-control-allow-origin"),
            granted,
            "{origin}"
        );
    }
    app.stop().await;

    // Without configured origins a preflight is just an OPTIONS request: no such route.
    let app = common::start().await;
    let resp = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/orders", app.base))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("HTTP");
    assert_eq!(resp.status(), 405);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    app.stop().await;
}
