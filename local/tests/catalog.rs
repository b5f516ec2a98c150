//! The catalog back office through the front door, end to end: an admin creates a product,
//! a customer orders it, the admin adjusts its stock (once per id) and discontinues it under
//! If-Match, after which `POST /orders` refuses it; `GET /products` pages; `verify` passes.

mod common;

use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Registers a user, makes them an admin, logs in; returns the bearer token.
async fn admin(app: &common::App) -> String {
    let email = format!("admin{}@example.com", uuid::Uuid::new_v4().simple());
    let creds = json!({"email": email, "password": "correct horse battery"});
    let (s, _) = app.send("POST", "/users", None, Some(creds.clone())).await;
    assert_eq!(s, 201);
    let ctx = &app.stack.ctx;
    let granted = identity::set_role(
        &ctx.pool,
        &ctx.sessions,
        &email,
        shared::session::Role::Admin,
    )
    .await
    .expect("grant");
    assert!(granted);
    let (s, body) = app.send("POST", "/sessions", None, Some(creds)).await;
    assert_eq!(s, 201, "{body}");
    body["token"].as_str().expect("token").to_string()
}

/// A request with headers; answers status, ETag and the JSON body.
async fn call(
    app: &common::App,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut req = app
        .http
        .request(
            method.parse().expect("method"),
            format!("{}{path}", app.base),
        )
        .bearer_auth(token)
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("HTTP");
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, etag, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `POST /orders` for `sku` until it answers `want` (the order service's catalog copy
/// catches up through the broker): a condition, not a fixed sleep.
async fn order_until(app: &common::App, token: &str, sku: &str, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, body) = app
            .send(
                "POST",
                "/orders",
                Some(token),
                Some(json!({"items": [{"product_id": sku, "quantity": 1}], "payment_token": "tok_visa"})),
            )
            .await;
        if s == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "POST /orders still answers {s}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_admin_runs_the_catalog_and_the_shop_follows() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 3), ("sku-b", 500, 3), ("sku-c", 700, 3)])
        .await;
    let boss = admin(&app).await;
    let customer = app.user().await;

    let new = json!({"product_id": "sku-new", "name": "Teapot", "price_cents": 3490,
                     "currency": "EUR", "stock": 4, "low_stock_threshold": 2});
    let (s, _, body) = call(&app, "POST", "/admin/products", &customer, &[], new.clone()).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (s, etag, body) = call(&app, "POST", "/admin/products", &boss, &[], new).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(etag.as_deref(), Some("\"1\""));

    let placed = order_until(&app, &customer, "sku-new", 202).await;
    let order_id = placed["order_id"].as_str().expect("order_id").to_string();
    assert_eq!(
        app.final_state(&customer, &order_id).await["status"],
        "CONFIRMED"
    );

    let adj = json!({"adjustment_id": "delivery-7", "delta": 6, "reason": "delivery"});
    let path = "/admin/products/sku-new/stock-adjustments";
    let (s, _, first) = call(&app, "POST", path, &boss, &[], adj.clone()).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(
        (&first["available"], &first["reserved"]),
        (&json!(9), &json!(1))
    );
    let (s, _, again) = call(&app, "POST", path, &boss, &[], adj).await;
    assert_eq!((s, again), (200, first));

    let patch = json!({"discontinued": true});
    let (s, _, _) = call(
        &app,
        "PATCH",
        "/admin/products/sku-new",
        &boss,
        &[],
        patch.clone(),
    )
    .await;
    assert_eq!(s, 428);
    let (s, _, body) = call(
        &app,
        "PATCH",
        "/admin/products/sku-new",
        &boss,
        &[("if-match", "\"1\"")],
        patch,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["discontinued"], true);
    let refused = order_until(&app, &customer, "sku-new", 422).await;
    assert_eq!(refused["error"]["code"], "discontinued_product");

    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/products?limit=2&cursor={c}"),
            None => "/products?limit=2".to_string(),
        };
        let (s, page) = app.send("GET", &path, None, None).await;
        assert_eq!(s, 200, "{page}");
        for p in page["products"].as_array().expect("products") {
            ids.push(p["product_id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(ids, vec!["sku-a", "sku-b", "sku-c", "sku-new"]);

    app.verify().await;
    app.stop().await;
}
