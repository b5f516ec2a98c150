//! `inventory-admin` on the real servers: products created, patched under If-Match and
//! adjusted once per adjustment id, for admins only, with their events in the outbox.

mod common;

use common::{Harness, created};
use serde_json::json;
use shared::contracts::*;
use shared::session::Role;

const CREATE: &str = "POST /admin/products";
const PATCH: &str = "PATCH /admin/products/{id}";
const ADJUST: &str = "POST /admin/products/{id}/stock-adjustments";

fn mug() -> serde_json::Value {
    json!({"product_id": "mug", "name": "Mug", "price_cents": 1299, "currency": "EUR",
           "stock": 10, "low_stock_threshold": 3})
}

fn adjustments(h: &Harness) -> Vec<StockAdjusted> {
    h.published_of(|p| match p {
        Payload::StockAdjusted(a) => Some(a),
        _ => None,
    })
}

fn lows(h: &Harness) -> Vec<StockLow> {
    h.published_of(|p| match p {
        Payload::StockLow(l) => Some(l),
        _ => None,
    })
}

fn updates(h: &Harness) -> Vec<ProductUpdated> {
    h.published_of(|p| match p {
        Payload::ProductUpdated(u) => Some(u),
        _ => None,
    })
}

#[tokio::test]
async fn an_admin_creates_a_product_with_its_stock_and_etag() {
    let h = Harness::new().await;
    let token = h.admin_token().await;
    let a = h.call_admin(CREATE, None, Some(&token), &[], mug()).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        a.body,
        json!({"product_id": "mug", "name": "Mug", "price_cents": 1299, "currency": "EUR",
               "available": 10, "reserved": 0, "discontinued": false,
               "low_stock_threshold": 3, "version": 1})
    );
    assert_eq!(a.etag(), Some("\"1\""));
    let u = updates(&h);
    assert_eq!(u.len(), 1);
    assert_eq!(
        (u[0].version, u[0].low_stock_threshold, u[0].discontinued),
        (1, 3, false)
    );
    let adj = adjustments(&h);
    assert_eq!(adj.len(), 1);
    assert_eq!((adj[0].delta, adj[0].available), (10, 10));
    assert_eq!(adj[0].adjustment_id, "initial:mug");
    assert!(lows(&h).is_empty(), "rising stock never alerts");
    assert_eq!(h.available("mug").await, 10);
    let cached = h.cached("mug").await.expect("cache refreshed");
    assert_eq!(cached.available, 10);
}

#[tokio::test]
async fn every_admin_route_is_401_without_a_session_and_403_for_a_customer() {
    let h = Harness::new().await;
    h.admin_product("mug", 5, 0).await;
    let customer = h.token(Role::Customer).await;
    let routes = [
        (CREATE, None, vec![], mug()),
        (
            PATCH,
            Some("mug"),
            vec![("if-match", "\"1\"")],
            json!({"name": "x"}),
        ),
        (
            ADJUST,
            Some("mug"),
            vec![],
            json!({"adjustment_id": "a1", "delta": 1, "reason": "count"}),
        ),
    ];
    for (route, id, headers, body) in routes {
        let a = h.call_admin(route, id, None, &headers, body.clone()).await;
        assert_eq!((a.status, a.code()), (401, Some("unauthorized")), "{route}");
        let a = h
            .call_admin(route, id, Some("not-a-token"), &headers, body.clone())
            .await;
        assert_eq!(a.status, 401, "{route}");
        let a = h
            .call_admin(route, id, Some(&customer), &headers, body)
            .await;
        assert_eq!((a.status, a.code()), (403, Some("forbidden")), "{route}");
    }
    assert!(
        h.env.published().is_empty(),
        "a refused call publishes nothing"
    );
    assert_eq!(h.available("mug").await, 5);
}

#[tokio::test]
async fn creating_a_product_twice_is_409_and_changes_nothing() {
    let h = Harness::new().await;
    let token = h.admin_token().await;
    assert_eq!(
        h.call_admin(CREATE, None, Some(&token), &[], mug())
            .await
            .status,
        201
    );
    h.env.clear_published();
    let mut again = mug();
    again["stock"] = json!(99);
    let a = h.call_admin(CREATE, None, Some(&token), &[], again).await;
    assert_eq!((a.status, a.code()), (409, Some("product_exists")));
    assert!(h.env.published().is_empty());
    assert_eq!(h.available("mug").await, 10);
}

#[tokio::test]
async fn an_invalid_product_is_400_naming_the_field() {
    let h = Harness::new().await;
    let token = h.admin_token().await;
    let cases = [
        ("product_id", json!("a b")),
        ("currency", json!("eur")),
        ("currency", json!("EURO")),
        ("price_cents", json!(-1)),
        ("stock", json!(-1)),
        ("low_stock_threshold", json!(-2)),
        ("name", json!("   ")),
    ];
    for (field, value) in cases {
        let mut body = mug();
        body[field] = value.clone();
        let a = h.call_admin(CREATE, None, Some(&token), &[], body).await;
        assert_eq!(
            (a.status, a.code()),
            (400, Some("invalid_request")),
            "{field}={value}"
        );
        let message = a.body["error"]["message"].as_str().expect("message");
        assert!(message.contains(field), "{field}: {message}");
    }
    let mut unknown = mug();
    unknown["colour"] = json!("red");
    let a = h.call_admin(CREATE, None, Some(&token), &[], unknown).await;
    assert_eq!(a.status, 400, "an unknown field is refused, not ignored");
    let a = h
        .call_admin(CREATE, None, Some(&token), &[], json!("not an object"))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        h.get("GET /products", "/products", &[], &[]).await.2["products"],
        json!([])
    );
}

#[tokio::test]
async fn a_patch_with_the_current_etag_applies_and_gives_the_next_version() {
    let h = Harness::new().await;
    let created = h.admin_product("mug", 5, 0).await;
    let token = h.admin_token().await;
    let etag = created.etag().expect("etag").to_string();
    // Reservations change the stock, not the catalog version: the ETag stays valid.
    h.reserve(&[created_order("o1")]).await;
    h.env.clear_published();
    let a = h
        .call_admin(
            PATCH,
            Some("mug"),
            Some(&token),
            &[("if-match", &etag)],
            json!({"price_cents": 1500, "discontinued": true, "low_stock_threshold": 2}),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.etag(), Some("\"2\""));
    assert_eq!(
        (
            &a.body["price_cents"],
            &a.body["discontinued"],
            &a.body["version"],
            &a.body["available"],
            &a.body["reserved"]
        ),
        (&json!(1500), &json!(true), &json!(2), &json!(4), &json!(1))
    );
    let u = updates(&h);
    assert_eq!(u.len(), 1);
    assert_eq!(
        (
            u[0].version,
            u[0].price_cents,
            u[0].discontinued,
            u[0].low_stock_threshold
        ),
        (2, 1500, true, 2)
    );
    // The same ETag again is stale now.
    let a = h
        .call_admin(
            PATCH,
            Some("mug"),
            Some(&token),
            &[("if-match", &etag)],
            json!({"name": "Cup"}),
        )
        .await;
    assert_eq!((a.status, a.code()), (412, Some("version_mismatch")));
    assert_eq!(updates(&h).len(), 1, "a refused patch publishes nothing");
}

fn created_order(id: &str) -> shared::Envelope {
    created(id, &[("mug", 1)])
}

#[tokio::test]
async fn a_patch_needs_if_match_a_known_product_and_valid_fields() {
    let h = Harness::new().await;
    h.admin_product("mug", 5, 0).await;
    let token = h.admin_token().await;
    let a = h
        .call_admin(
            PATCH,
            Some("mug"),
            Some(&token),
            &[],
            json!({"name": "Cup"}),
        )
        .await;
    assert_eq!((a.status, a.code()), (428, Some("if_match_required")));
    for bad in ["1", "W/\"1\"", "\"x\""] {
        let a = h
            .call_admin(
                PATCH,
                Some("mug"),
                Some(&token),
                &[("if-match", bad)],
                json!({"name": "Cup"}),
            )
            .await;
        assert_eq!(a.status, 400, "If-Match {bad}");
    }
    let a = h
        .call_admin(
            PATCH,
            Some("nope"),
            Some(&token),
            &[("if-match", "\"1\"")],
            json!({"name": "Cup"}),
        )
        .await;
    assert_eq!((a.status, a.code()), (404, Some("not_found")));
    let a = h
        .call_admin(
            PATCH,
            Some("mug"),
            Some(&token),
            &[("if-match", "\"1\"")],
            json!({"price_cents": -1}),
        )
        .await;
    assert_eq!(a.status, 400);
    let a = h
        .call_admin(
            PATCH,
            Some("mug"),
            Some(&token),
            &[("if-match", "\"1\"")],
            json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(a.status, 400, "currency cannot change over HTTP");
    let a = h
        .call_admin(
            PATCH,
            Some("a b"),
            Some(&token),
            &[("if-match", "\"1\"")],
            json!({}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(h.env.published().is_empty());
    // `*` matches any version; a patch that changes nothing keeps the version.
    let a = h
        .call_admin(
            PATCH,
            Some("mug"),
            Some(&token),
            &[("if-match", "*")],
            json!({"name": "Product mug"}),
        )
        .await;
    assert_eq!((a.status, a.etag()), (200, Some("\"1\"")));
    assert!(h.env.published().is_empty());
}

#[tokio::test]
async fn a_stock_adjustment_applies_once_per_id() {
    let h = Harness::new().await;
    h.admin_product("mug", 5, 0).await;
    let token = h.admin_token().await;
    let body = json!({"adjustment_id": "count-2026-12", "delta": 7, "reason": "stock count"});
    let first = h
        .call_admin(ADJUST, Some("mug"), Some(&token), &[], body.clone())
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(
        first.body,
        json!({"adjustment_id": "count-2026-12", "product_id": "mug", "delta": 7,
               "available": 12, "reserved": 0})
    );
    h.reserve(&[created_order("o1")]).await;
    let again = h
        .call_admin(ADJUST, Some("mug"), Some(&token), &[], body)
        .await;
    assert_eq!(again.status, 200, "a retry is answered, not applied");
    assert_eq!(again.body, first.body, "the retry gets the first answer");
    assert_eq!(h.figures("mug").await, (11, 1));
    assert_eq!(adjustments(&h).len(), 1, "one stock.adjusted");
    let reused = h
        .call_admin(
            ADJUST,
            Some("mug"),
            Some(&token),
            &[],
            json!({"adjustment_id": "count-2026-12", "delta": 8, "reason": "stock count"}),
        )
        .await;
    assert_eq!(
        (reused.status, reused.code()),
        (422, Some("idempotency_key_reused"))
    );
    h.admin_product("cup", 5, 0).await;
    let other_product = h
        .call_admin(
            ADJUST,
            Some("cup"),
            Some(&token),
            &[],
            json!({"adjustment_id": "count-2026-12", "delta": 7, "reason": "stock count"}),
        )
        .await;
    assert_eq!(
        other_product.status, 422,
        "an id names one product's adjustment"
    );
    assert_eq!(h.available("cup").await, 5);
    let movements: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM inventory.stock_movements WHERE product_id = 'mug' AND kind = 'adjust'",
    )
    .fetch_one(&h.env.ctx.pool)
    .await
    .expect("count");
    assert_eq!(movements, 2, "the initial stock and one adjustment");
}

#[tokio::test]
async fn concurrent_retries_of_one_adjustment_apply_it_once() {
    let h = Harness::new().await;
    h.admin_product("mug", 5, 0).await;
    let token = h.admin_token().await;
    let body = json!({"adjustment_id": "dup", "delta": 3, "reason": "delivery"});
    let calls = (0..6).map(|_| h.call_admin(ADJUST, Some("mug"), Some(&token), &[], body.clone()));
    let answers = futures::future::join_all(calls).await;
    let mut statuses: Vec<i64> = answers.iter().map(|a| a.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 201]);
    assert_eq!(h.available("mug").await, 8);
    assert_eq!(adjustments(&h).len(), 1);
}

#[tokio::test]
async fn stock_never_goes_below_what_is_reserved() {
    let h = Harness::new().await;
    h.admin_product("mug", 3, 0).await;
    h.reserve(&[created("o1", &[("mug", 2)])]).await;
    assert_eq!(h.figures("mug").await, (1, 2));
    let token = h.admin_token().await;
    let a = h
        .call_admin(
            ADJUST,
            Some("mug"),
            Some(&token),
            &[],
            json!({"adjustment_id": "loss", "delta": -2, "reason": "broken"}),
        )
        .await;
    assert_eq!((a.status, a.code()), (409, Some("insufficient_stock")));
    assert_eq!(h.figures("mug").await, (1, 2));
    // The refused id was not used up: the same id with a delta that fits applies.
    let a = h
        .call_admin(
            ADJUST,
            Some("mug"),
            Some(&token),
            &[],
            json!({"adjustment_id": "loss", "delta": -1, "reason": "broken"}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(h.figures("mug").await, (0, 2));
}

#[tokio::test]
async fn an_adjustment_of_an_unknown_product_is_404_and_a_bad_one_400() {
    let h = Harness::new().await;
    h.admin_product("mug", 3, 0).await;
    let token = h.admin_token().await;
    let a = h
        .call_admin(
            ADJUST,
            Some("nope"),
            Some(&token),
            &[],
            json!({"adjustment_id": "a1", "delta": 1, "reason": "x"}),
        )
        .await;
    assert_eq!((a.status, a.code()), (404, Some("not_found")));
    for body in [
        json!({"adjustment_id": "a1", "delta": 0, "reason": "x"}),
        json!({"adjustment_id": "a 1", "delta": 1, "reason": "x"}),
        json!({"adjustment_id": "a1", "delta": 1, "reason": ""}),
        json!({"adjustment_id": "a1", "delta": "1", "reason": "x"}),
        json!({"adjustment_id": "a1", "delta": 1}),
    ] {
        let a = h
            .call_admin(ADJUST, Some("mug"), Some(&token), &[], body.clone())
            .await;
        assert_eq!(a.status, 400, "{body}");
    }
    assert_eq!(h.available("mug").await, 3);
}

#[tokio::test]
async fn stock_low_is_published_once_when_an_adjustment_crosses_the_threshold() {
    let h = Harness::new().await;
    h.admin_product("mug", 10, 4).await;
    let token = h.admin_token().await;
    let adjust = |id: &'static str, delta: i64| {
        let token = token.clone();
        let h = &h;
        async move {
            h.call_admin(
                ADJUST,
                Some("mug"),
                Some(&token),
                &[],
                json!({"adjustment_id": id, "delta": delta, "reason": "count"}),
            )
            .await
        }
    };
    assert_eq!(adjust("a1", -5).await.status, 201); // 10 -> 5: above 4
    assert!(lows(&h).is_empty());
    assert_eq!(adjust("a2", -1).await.status, 201); // 5 -> 4: crosses
    assert_eq!(adjust("a2", -1).await.status, 200); // retried: nothing new
    assert_eq!(adjust("a3", -1).await.status, 201); // 4 -> 3: already low
    let l = lows(&h);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!((l[0].available, l[0].threshold), (4, 4));
    assert_eq!(adjust("a4", 10).await.status, 201); // 3 -> 13: back above
    assert_eq!(adjust("a5", -9).await.status, 201); // 13 -> 4: crosses again
    assert_eq!(lows(&h).len(), 2);
}

#[tokio::test]
async fn stock_low_is_published_when_a_reservation_crosses_the_threshold() {
    let h = Harness::new().await;
    h.admin_product("mug", 5, 3).await;
    h.reserve(&[created("o1", &[("mug", 1)])]).await; // 5 -> 4
    assert!(lows(&h).is_empty());
    h.reserve(&[created("o2", &[("mug", 2)])]).await; // 4 -> 2: crosses
    h.reserve(&[created("o3", &[("mug", 1)])]).await; // 2 -> 1: already low
    let l = lows(&h);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        (l[0].product_id.as_str(), l[0].available, l[0].threshold),
        ("mug", 2, 3)
    );
}

#[tokio::test]
async fn stock_low_is_published_once_when_a_chunk_of_reservations_crosses_it() {
    let h = Harness::new().await;
    h.admin_product("mug", 6, 3).await;
    h.admin_product("cup", 6, 0).await;
    // One batch: the set-based path decides the chunk at once.
    let report = h
        .reserve(&[
            created("o1", &[("mug", 1), ("cup", 5)]),
            created("o2", &[("mug", 2)]),
            created("o3", &[("mug", 1)]),
        ])
        .await;
    assert_eq!(report.processed, 3, "{report:?}");
    assert_eq!(h.figures("mug").await, (2, 4));
    let l = lows(&h);
    assert_eq!(
        l.len(),
        1,
        "one alert for mug, none for cup (threshold 0): {l:?}"
    );
    assert_eq!((l[0].product_id.as_str(), l[0].available), ("mug", 2));
}
