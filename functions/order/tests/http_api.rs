//! `POST /orders` and `GET /orders/{id}` against real Postgres and Redis.
#![allow(clippy::unwrap_used)]

mod common;

use common::Harness;
use serde_json::{Value, json};
use shared::contracts::Payload;

const ONE_LINE: &str =
    r#"{"items":[{"product_id":"sku-1","quantity":2}],"payment_token":"tok_visa"}"#;

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn creating_an_order_answers_202_and_publishes_order_created_with_catalog_prices() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let body = r#"{"items":[{"product_id":"sku-1","quantity":2},{"product_id":"sku-2","quantity":3}],"payment_token":"tok_visa"}"#;
    let (status, answer) = h.post_order(Some(&user.token), body, None).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "PENDING");
    let order_id = answer["order_id"].as_str().unwrap().to_string();

    let published = h.env.published();
    assert_eq!(published.len(), 1, "exactly one event");
    let Payload::OrderCreated(created) = published[0].payload() else {
        panic!("not order.created")
    };
    assert_eq!(created.order_id, order_id);
    assert_eq!(published[0].correlation_id, order_id);
    assert_eq!(created.user_id, user.user_id.to_string());
    assert_eq!(created.customer_email, user.email);
    assert_eq!(created.total_cents, 2 * 1999 + 3 * 500);
    assert_eq!(created.currency, "EUR");
    // The token travels sealed for the payment service; the order keeps nothing of it but
    // the reference.
    assert_eq!(created.payment_token, "", "no clear-text token on the bus");
    assert_eq!(created.payment_ref, "tok_...visa");
    let keys = shared::payment_token::TokenKeys::from_config(&h.env.ctx.config).unwrap();
    assert_eq!(
        keys.open(&order_id, &created.payment_token_sealed).unwrap(),
        "tok_visa"
    );
    for message in h.env.publisher.sent() {
        assert!(
            !String::from_utf8_lossy(&message.body).contains("tok_visa"),
            "the published bytes carry the token"
        );
    }
    let stored: Vec<String> = sqlx::query_scalar("SELECT payment_ref FROM orders.orders")
        .fetch_all(&h.env.ctx.pool)
        .await
        .unwrap();
    assert_eq!(stored, vec!["tok_...visa".to_string()]);
    let lines: Vec<(&str, u32, i64)> = created
        .items
        .iter()
        .map(|l| (l.product_id.as_str(), l.quantity, l.unit_price_cents))
        .collect();
    assert_eq!(lines, vec![("sku-1", 2, 1999), ("sku-2", 3, 500)]);

    let row = h.order_row(uuid::Uuid::parse_str(&order_id).unwrap()).await;
    assert_eq!(row.status, "PENDING");
    assert_eq!(
        row.items,
        vec![("sku-1".to_string(), 2), ("sku-2".to_string(), 3)]
    );
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_returns_the_same_answer_and_creates_one_order() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let first = h
        .post_order(Some(&user.token), ONE_LINE, Some("key-1"))
        .await;
    // Same order, other formatting: the canonical hash matches.
    let reformatted =
        r#"{ "payment_token": "tok_visa", "items": [ { "quantity": 2, "product_id": "sku-1" } ] }"#;
    let second = h
        .post_order(Some(&user.token), reformatted, Some("key-1"))
        .await;
    assert_eq!(first.0, 202);
    assert_eq!(first, second);
    assert_eq!(order::orders(&h.env.ctx.pool).await.unwrap().len(), 1);
    assert_eq!(h.env.published_types(), vec!["order.created"]);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_body_is_422() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    assert_eq!(
        h.post_order(Some(&user.token), ONE_LINE, Some("key-1"))
            .await
            .0,
        202
    );
    let other = r#"{"items":[{"product_id":"sku-1","quantity":3}],"payment_token":"tok_visa"}"#;
    let (status, body) = h.post_order(Some(&user.token), other, Some("key-1")).await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "idempotency_key_reused"),
        "{body}"
    );
    assert_eq!(order::orders(&h.env.ctx.pool).await.unwrap().len(), 1);
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_user() {
    let h = Harness::seeded().await;
    let (alice, bob) = (h.user().await, h.user().await);
    let a = h
        .post_order(Some(&alice.token), ONE_LINE, Some("shared-key"))
        .await;
    let b = h
        .post_order(Some(&bob.token), ONE_LINE, Some("shared-key"))
        .await;
    assert_eq!((a.0, b.0), (202, 202));
    assert_ne!(a.1["order_id"], b.1["order_id"]);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_order() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (a, b) = tokio::join!(
        h.post_order(Some(&user.token), ONE_LINE, Some("race")),
        h.post_order(Some(&user.token), ONE_LINE, Some("race")),
    );
    assert_eq!(a, b);
    assert_eq!(a.0, 202);
    assert_eq!(order::orders(&h.env.ctx.pool).await.unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_valid_session_it_is_401() {
    let h = Harness::seeded().await;
    let (status, body) = h.post_order(None, ONE_LINE, None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, body) = h
        .post_order(Some("ofs_not-a-session"), ONE_LINE, None)
        .await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    assert!(h.env.published().is_empty());
}

#[tokio::test]
async fn invalid_bodies_are_400_invalid_request() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"product_id": "sku-1", "quantity": 1}))
        .collect();
    let cases = [
        ("malformed JSON", "{\"items\": [".to_string()),
        ("empty body", String::new()),
        ("wrong types", r#"{"items":[{"product_id":"sku-1","quantity":"2"}],"payment_token":"tok_visa"}"#.into()),
        ("quantity 0", r#"{"items":[{"product_id":"sku-1","quantity":0}],"payment_token":"tok_visa"}"#.into()),
        ("quantity 1001", r#"{"items":[{"product_id":"sku-1","quantity":1001}],"payment_token":"tok_visa"}"#.into()),
        ("huge quantity", r#"{"items":[{"product_id":"sku-1","quantity":99999999999999999999}],"payment_token":"tok_visa"}"#.into()),
        ("no lines", r#"{"items":[],"payment_token":"tok_visa"}"#.into()),
        ("101 lines", json!({"items": many, "payment_token": "tok_visa"}).to_string()),
        ("empty product", r#"{"items":[{"product_id":"","quantity":1}],"payment_token":"tok_visa"}"#.into()),
        ("card number", r#"{"items":[{"product_id":"sku-1","quantity":1}],"payment_token":"4242424242424242"}"#.into()),
    ];
    for (what, body) in cases {
        let (status, answer) = h.post_order(Some(&user.token), &body, None).await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "invalid_request"),
            "{what}: {answer}"
        );
    }
    let (status, _) = h
        .post_order(Some(&user.token), ONE_LINE, Some(&"k".repeat(256)))
        .await;
    assert_eq!(status, 400, "an over-long Idempotency-Key");
    assert!(h.env.published().is_empty());
    assert!(order::orders(&h.env.ctx.pool).await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_products_are_422_and_named() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let body = r#"{"items":[{"product_id":"sku-1","quantity":1},{"product_id":"nope","quantity":1}],"payment_token":"tok_visa"}"#;
    let (status, answer) = h.post_order(Some(&user.token), body, None).await;
    assert_eq!((status, error_code(&answer)), (422, "unknown_product"));
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{answer}"
    );
    assert!(h.env.published().is_empty());
}

#[tokio::test]
async fn products_in_different_currencies_are_422_mixed_currency() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let body = r#"{"items":[{"product_id":"sku-1","quantity":1},{"product_id":"usd-1","quantity":1}],"payment_token":"tok_visa"}"#;
    let (status, answer) = h.post_order(Some(&user.token), body, None).await;
    assert_eq!((status, error_code(&answer)), (422, "mixed_currency"));
}

#[tokio::test]
async fn the_owner_reads_the_order_with_items_and_timeline() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, _) = h.place(&user, "tok_visa").await;
    let (status, body) = h.get_order(&user.token, &id.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order_id"], id.to_string());
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["reason"], Value::Null);
    assert_eq!(body["total_cents"], 3998);
    assert_eq!(body["currency"], "EUR");
    assert_eq!(
        body["items"],
        json!([{"product_id": "sku-1", "name": "Product sku-1", "quantity": 2, "unit_price_cents": 1999}])
    );
    let timeline = body["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["event_type"], "order.created");
    assert_eq!(timeline[0]["source"], "published");
    assert!(body["created_at"].is_string() && body["updated_at"].is_string());
}

#[tokio::test]
async fn another_users_order_or_a_malformed_id_is_404() {
    let h = Harness::seeded().await;
    let (owner, other) = (h.user().await, h.user().await);
    let (id, _) = h.place(&owner, "tok_visa").await;
    let (status, body) = h.get_order(&other.token, &id.to_string()).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    assert_eq!(h.get_order(&owner.token, "not-a-uuid").await.0, 404);
    assert_eq!(
        h.get_order(&owner.token, &uuid::Uuid::now_v7().to_string())
            .await
            .0,
        404
    );
    assert_eq!(h.get_order("ofs_bogus", &id.to_string()).await.0, 401);
}

#[tokio::test]
async fn with_the_session_store_down_it_is_503_not_401() {
    let env =
        shared::testing::TestEnv::with_config(|c| c.redis_url = "redis://127.0.0.1:1".into()).await;
    let h = Harness::from_env(env).await;
    let (status, body) = h.post_order(Some("ofs_anything"), ONE_LINE, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "dependency_unavailable"),
        "{body}"
    );
}

/// The raw API Gateway answer of `POST /orders` (status, `Retry-After`, body).
async fn post_raw(h: &Harness, token: &str, key: &str) -> (u16, Option<String>, serde_json::Value) {
    let mut req = shared::http::request("POST", "/orders", "POST /orders");
    req.body = Some(ONE_LINE.to_string());
    for (name, value) in [
        ("authorization", format!("Bearer {token}")),
        ("idempotency-key", key.to_string()),
    ] {
        req.headers.insert(
            aws_lambda_events::http::HeaderName::from_static(name),
            aws_lambda_events::http::HeaderValue::from_str(&value).unwrap(),
        );
    }
    let out = h
        .create
        .invoke(serde_json::to_value(&req).unwrap())
        .await
        .unwrap();
    let retry_after = out["headers"]["retry-after"].as_str().map(String::from);
    let body = serde_json::from_str(out["body"].as_str().unwrap_or("null")).unwrap();
    (
        out["statusCode"].as_u64().unwrap() as u16,
        retry_after,
        body,
    )
}

#[tokio::test]
async fn a_backlog_that_cannot_be_decided_in_time_is_refused_with_503_and_retry_after_and_nothing_created()
 {
    let env = shared::testing::TestEnv::with_config(|c| {
        c.admission.min_backlog = 3;
        // Every request reads the backlog afresh, so the refusal is immediate.
        c.admission.refresh = std::time::Duration::ZERO;
        // Refuse as soon as orders wait at all (the test's orders are a moment old).
        c.admission.min_wait = std::time::Duration::ZERO;
    })
    .await;
    let h = Harness::from_env(env).await;
    h.seed_catalog().await;
    let user = h.user().await;
    // Three orders waiting, none decided lately: the consumers look stalled.
    let mut placed = Vec::new();
    for _ in 0..3 {
        placed.push(h.place(&user, "tok_visa").await.1);
    }
    let (status, retry_after, body) = post_raw(&h, &user.token, "during-overload").await;
    assert_eq!((status, error_code(&body)), (503, "overloaded"), "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(
        order::orders(&h.env.ctx.pool).await.unwrap().len(),
        3,
        "nothing created"
    );

    // The backlog is decided; the same key is still free and now goes through.
    for created in &placed {
        h.to_saga(&[common::reserved(created), common::payment(created, true)])
            .await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _, body) = post_raw(&h, &user.token, "during-overload").await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the backlog drained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(order::orders(&h.env.ctx.pool).await.unwrap().len(), 4);
}
