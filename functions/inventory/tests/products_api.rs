//! `inventory-products` over HTTP, with the Redis stock cache in front of Postgres.

mod common;

use common::{Harness, created};

#[tokio::test]
async fn products_are_listed_in_order_with_their_availability() {
    let h = Harness::new().await;
    h.seed(&[("b", 2), ("a", 5)]).await;
    h.reserve(&[created("o1", &[("a", 1)])]).await;
    let (status, source, body) = h.get("GET /products", "/products", &[], &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        source.as_deref(),
        Some("cache"),
        "seeding and the reservation filled the cache"
    );
    let products = body["products"].as_array().expect("array");
    let ids: Vec<&str> = products
        .iter()
        .filter_map(|p| p["product_id"].as_str())
        .collect();
    assert_eq!(ids, vec!["a", "b"]);
    assert_eq!(products[0]["available"], 4);
    assert_eq!(products[0]["name"], "Product a");
    assert_eq!(products[0]["price_cents"], 1000);
    assert_eq!(products[0]["currency"], "EUR");
}

#[tokio::test]
async fn a_cache_miss_reads_postgres_and_fills_the_cache() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    let key = h.env.ctx.names.redis_key("stock:a");
    let mut conn = h.env.ctx.redis.conn().await.expect("redis");
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("del");
    let (status, source, body) = h
        .get(
            "GET /products/{id}/stock",
            "/products/a/stock",
            &[("id", "a")],
            &[],
        )
        .await;
    assert_eq!((status, source.as_deref()), (200, Some("database")));
    assert_eq!(body, serde_json::json!({"product_id": "a", "available": 5}));
    let (_, source, _) = h
        .get(
            "GET /products/{id}/stock",
            "/products/a/stock",
            &[("id", "a")],
            &[],
        )
        .await;
    assert_eq!(source.as_deref(), Some("cache"));
}

#[tokio::test]
async fn an_unknown_product_is_404() {
    let h = Harness::new().await;
    let (status, _, body) = h
        .get(
            "GET /products/{id}/stock",
            "/products/nope/stock",
            &[("id", "nope")],
            &[],
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn stock_for_many_ids_comes_back_in_the_order_asked() {
    let h = Harness::new().await;
    h.seed(&[("a", 5), ("b", 2)]).await;
    let (status, source, body) = h.get("GET /stock", "/stock", &[], &[("ids", "b,a")]).await;
    assert_eq!((status, source.as_deref()), (200, Some("cache")));
    assert_eq!(
        body,
        serde_json::json!({"stock": [{"product_id": "b", "available": 2}, {"product_id": "a", "available": 5}]})
    );
}

#[tokio::test]
async fn stock_without_ids_or_with_too_many_is_400() {
    let h = Harness::new().await;
    let (status, _, body) = h.get("GET /stock", "/stock", &[], &[]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _, _) = h.get("GET /stock", "/stock", &[], &[("ids", " , ")]).await;
    assert_eq!(status, 400);
    let many: Vec<String> = (0..101).map(|i| format!("p{i}")).collect();
    let (status, _, body) = h
        .get("GET /stock", "/stock", &[], &[("ids", &many.join(","))])
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn stock_with_unknown_ids_is_404_naming_them() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    let (status, _, body) = h
        .get("GET /stock", "/stock", &[], &[("ids", "a,x,y")])
        .await;
    assert_eq!(status, 404);
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("x,y"), "{message}");
}

#[tokio::test]
async fn an_unknown_route_is_404() {
    let h = Harness::new().await;
    let (status, _, _) = h.get("GET /nothing", "/nothing", &[], &[]).await;
    assert_eq!(status, 404);
}
