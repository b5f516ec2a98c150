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
    assert_eq!(products[0]["discontinued"], false);
    assert_eq!(products[0]["version"], 1);
    assert_eq!(
        body["next_cursor"],
        serde_json::Value::Null,
        "one page holds them all"
    );
}

/// Every product id of a walk through all pages of `limit`.
async fn walk(h: &Harness, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let (status, _, body) = h.get("GET /products", "/products", &[], &query).await;
        assert_eq!(status, 200, "{body}");
        let page = body["products"].as_array().expect("array");
        assert!(page.len() <= limit.parse().expect("limit"));
        ids.extend(
            page.iter()
                .map(|p| p["product_id"].as_str().expect("id").to_string()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn pages_follow_the_cursor_to_the_end() {
    let h = Harness::new().await;
    h.seed(&[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)])
        .await;
    let (_, _, first) = h
        .get("GET /products", "/products", &[], &[("limit", "2")])
        .await;
    assert_eq!(first["products"].as_array().map(Vec::len), Some(2));
    assert!(first["next_cursor"].is_string());
    assert_eq!(walk(&h, 2).await, vec!["a", "b", "c", "d", "e"]);
    assert_eq!(
        walk(&h, 5).await.len(),
        5,
        "an exact last page has no next cursor"
    );
}

#[tokio::test]
async fn pagination_has_no_gap_or_duplicate_while_products_are_inserted() {
    let h = Harness::new().await;
    let before: Vec<String> = (0..40).map(|i| format!("p{:03}", i * 2)).collect();
    let seeds: Vec<(&str, i32)> = before.iter().map(|id| (id.as_str(), 1)).collect();
    h.seed(&seeds).await;
    let ctx = h.env.ctx.clone();
    let writer = tokio::spawn(async move {
        // Odd ids land between the existing ones, before and after any cursor.
        for i in 0..40 {
            let seed = inventory::ProductSeed {
                product_id: format!("p{:03}", i * 2 + 1),
                name: "late".into(),
                price_cents: 1,
                currency: "EUR".into(),
                stock: 1,
            };
            inventory::upsert_products(&ctx, &[seed])
                .await
                .expect("insert");
        }
    });
    let mut walks = Vec::new();
    while !writer.is_finished() || walks.is_empty() {
        walks.push(walk(&h, 7).await);
    }
    writer.await.expect("writer");
    walks.push(walk(&h, 7).await);
    for ids in &walks {
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(&sorted, ids, "in order, no duplicate");
        for id in &before {
            assert!(ids.contains(id), "{id} was there all along and is missing");
        }
    }
    assert_eq!(walks.last().map(Vec::len), Some(80));
}

#[tokio::test]
async fn a_bad_limit_or_cursor_is_400() {
    let h = Harness::new().await;
    h.seed(&[("a", 1)]).await;
    for bad in ["0", "201", "x", "-3"] {
        let (status, _, body) = h
            .get("GET /products", "/products", &[], &[("limit", bad)])
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "limit {bad}"
        );
    }
    for bad in ["garbage!", "YQ", ""] {
        let (status, _, _) = h
            .get("GET /products", "/products", &[], &[("cursor", bad)])
            .await;
        assert_eq!(status, 400, "cursor {bad:?}");
    }
    let (status, _, body) = h
        .get("GET /products", "/products", &[], &[("limit", "200")])
        .await;
    assert_eq!(
        (status, body["products"].as_array().map(Vec::len)),
        (200, Some(1))
    );
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
