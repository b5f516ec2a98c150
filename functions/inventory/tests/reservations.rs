//! Reserve and release against the real local Postgres and Redis.

mod common;

use common::{Harness, cancelled, created, rejections};
use inventory::domain::StockFigure;
use shared::contracts::*;

#[tokio::test]
async fn a_reservation_takes_the_stock_publishes_stock_reserved_and_updates_the_cache() {
    let h = Harness::new().await;
    h.seed(&[("a", 5), ("b", 2)]).await;
    let before = h.cached("a").await.expect("seed cached the figure");
    let report = h
        .reserve(&[created("o1", &[("b", 1), ("a", 2), ("b", 1)])])
        .await;
    assert_eq!(report.processed, 1);
    assert_eq!((h.available("a").await, h.available("b").await), (3, 0));
    assert_eq!(h.status("o1").await.as_deref(), Some("reserved"));
    let published = h.env.published();
    assert_eq!(published.len(), 1);
    match &published[0].payload {
        Some(Payload::StockReserved(r)) => {
            let lines: Vec<(&str, u32)> = r
                .items
                .iter()
                .map(|l| (l.product_id.as_str(), l.quantity))
                .collect();
            assert_eq!(lines, vec![("a", 2), ("b", 2)], "merged and sorted");
        }
        other => panic!("expected stock.reserved, got {other:?}"),
    }
    let after = h.cached("a").await.expect("cached");
    assert_eq!(
        after,
        StockFigure {
            version: before.version + 1,
            available: 3
        }
    );
    assert_eq!(h.cached("b").await.map(|f| f.available), Some(0));
    assert!(
        inventory::cache_disagreements(&h.env.ctx)
            .await
            .expect("check")
            .is_empty()
    );
}

#[tokio::test]
async fn an_order_beyond_the_stock_is_rejected_and_changes_nothing() {
    let h = Harness::new().await;
    h.seed(&[("a", 5), ("b", 1)]).await;
    let cached_a = h.cached("a").await;
    h.reserve(&[created("o1", &[("a", 2), ("b", 2)])]).await;
    assert_eq!(
        (h.available("a").await, h.available("b").await),
        (5, 1),
        "line a rolled back too"
    );
    assert_eq!(h.cached("a").await, cached_a);
    assert_eq!(h.status("o1").await.as_deref(), Some("rejected"));
    let rejected = rejections(&h.env.published());
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (rejected[0].reason, rejected[0].product_id.as_str()),
        (RejectReason::OutOfStock as i32, "b")
    );
    assert_eq!(h.env.published().len(), 1, "nothing but the rejection");
}

#[tokio::test]
async fn an_unknown_product_is_rejected_as_such() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    h.reserve(&[created("o1", &[("a", 1), ("zz", 1)])]).await;
    let rejected = rejections(&h.env.published());
    assert_eq!(
        (rejected[0].reason, rejected[0].product_id.as_str()),
        (RejectReason::UnknownProduct as i32, "zz")
    );
    assert_eq!(h.available("a").await, 5);
}

#[tokio::test]
async fn releasing_a_reservation_gives_the_stock_back_once() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    h.reserve(&[created("o1", &[("a", 3)])]).await;
    h.env.clear_published();
    let cancel = cancelled("o1");
    h.release(std::slice::from_ref(&cancel)).await;
    let again = h.release(&[cancel]).await;
    assert_eq!(again.duplicates, 1);
    h.release(&[cancelled("o1")]).await;
    assert_eq!(h.available("a").await, 5);
    assert_eq!(h.status("o1").await.as_deref(), Some("released"));
    let published = h.env.published();
    assert_eq!(published.len(), 1);
    match &published[0].payload {
        Some(Payload::StockReleased(r)) => assert_eq!(
            (r.items[0].product_id.as_str(), r.items[0].quantity),
            ("a", 3)
        ),
        other => panic!("expected stock.released, got {other:?}"),
    }
    assert_eq!(h.cached("a").await.map(|f| f.available), Some(5));
    assert!(
        inventory::reserved_quantities(&h.env.ctx.pool)
            .await
            .expect("held")
            .is_empty()
    );
}

#[tokio::test]
async fn a_cancel_before_the_reservation_leaves_a_tombstone_and_the_late_order_is_refused() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    let report = h.release(&[cancelled("o1")]).await;
    assert_eq!(report.processed, 1);
    assert!(h.env.published().is_empty());
    assert_eq!(h.status("o1").await.as_deref(), Some("cancelled"));
    h.reserve(&[created("o1", &[("a", 2)])]).await;
    assert_eq!(h.available("a").await, 5, "stock untouched");
    assert_eq!(h.status("o1").await.as_deref(), Some("cancelled"));
    let rejected = rejections(&h.env.published());
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, RejectReason::OrderCancelled as i32);
}

#[tokio::test]
async fn a_duplicate_order_created_reserves_once() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    let ev = created("o1", &[("a", 2)]);
    h.reserve(std::slice::from_ref(&ev)).await;
    let again = h.reserve(&[ev.clone(), ev]).await;
    assert_eq!(again.duplicates, 2);
    h.reserve(&[created("o1", &[("a", 2)])]).await;
    assert_eq!(h.available("a").await, 3);
    assert_eq!(h.env.published().len(), 1, "one stock.reserved");
}

#[tokio::test]
async fn a_cancel_after_a_rejection_does_nothing() {
    let h = Harness::new().await;
    h.seed(&[("a", 1)]).await;
    h.reserve(&[created("o1", &[("a", 2)])]).await;
    h.env.clear_published();
    h.release(&[cancelled("o1")]).await;
    assert!(h.env.published().is_empty());
    assert_eq!(
        (h.available("a").await, h.status("o1").await.as_deref()),
        (1, Some("rejected"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_for_the_last_unit_reserve_it_exactly_once() {
    let h = Harness::new().await;
    h.seed(&[("last", 1)]).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let f = h.reserve.clone();
        let ev = h.env.rmq_event(
            "inventory-reserve",
            &[created(&format!("o{i}"), &[("last", 1)])],
            shared::Encoding::Protobuf,
        );
        tasks.push(tokio::spawn(async move {
            f.invoke(serde_json::to_value(&ev).expect("json"))
                .await
                .map_err(|e| e.to_string())
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("invocation succeeds");
    }
    let types = h.env.published_types();
    assert_eq!(
        types.iter().filter(|t| *t == "stock.reserved").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "stock.rejected").count(),
        7,
        "{types:?}"
    );
    assert_eq!(h.available("last").await, 0);
    assert_eq!(h.cached("last").await.map(|f| f.available), Some(0));
}

#[tokio::test]
async fn invalid_orders_and_unexpected_events_are_parked_with_a_reason() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    let report = h
        .reserve(&[
            created("o1", &[]),
            created("o2", &[("a", 0)]),
            cancelled("o3"),
        ])
        .await;
    let reasons: Vec<&str> = report.parked.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("no items"));
    assert!(reasons[1].contains("at least 1"));
    assert!(reasons[2].contains("unexpected event type order.cancelled"));
    assert_eq!(h.env.parked().len(), 3);
    assert_eq!(h.status("o1").await, None, "nothing left behind");
    let report = h.release(&[created("o4", &[("a", 1)])]).await;
    assert!(
        report.parked[0]
            .reason
            .contains("unexpected event type order.created")
    );
}

#[tokio::test]
async fn the_cache_never_goes_backwards() {
    let h = Harness::new().await;
    let cache = inventory::RedisStockCache::from_context(&h.env.ctx);
    let newer = StockFigure {
        version: 5,
        available: 1,
    };
    cache
        .put_many(&[("p".to_string(), newer)])
        .await
        .expect("write");
    cache
        .put_many(&[(
            "p".to_string(),
            StockFigure {
                version: 3,
                available: 9,
            },
        )])
        .await
        .expect("write");
    assert_eq!(h.cached("p").await, Some(newer));
    let newest = StockFigure {
        version: 6,
        available: 0,
    };
    cache
        .put_many(&[("p".to_string(), newest)])
        .await
        .expect("write");
    assert_eq!(h.cached("p").await, Some(newest));
}

#[tokio::test]
async fn seeding_goes_through_the_back_office_and_publishes_what_an_admin_would() {
    let h = Harness::new().await;
    let seed = inventory::ProductSeed {
        product_id: "mug".into(),
        name: "Mug".into(),
        price_cents: 1299,
        currency: "EUR".into(),
        stock: 7,
    };
    inventory::upsert_products(&h.env.ctx, std::slice::from_ref(&seed))
        .await
        .expect("seed");
    h.reserve(&[common::created("o1", &[("mug", 2)])]).await;
    // Re-seeding brings the shelf back to 7 by an adjustment (+2) and patches the price.
    inventory::upsert_products(
        &h.env.ctx,
        &[inventory::ProductSeed {
            price_cents: 1499,
            ..seed.clone()
        }],
    )
    .await
    .expect("reseed");
    // The same seed again changes nothing: no new version, no adjustment.
    inventory::upsert_products(
        &h.env.ctx,
        &[inventory::ProductSeed {
            price_cents: 1499,
            ..seed.clone()
        }],
    )
    .await
    .expect("reseed, unchanged");
    let published = h.env.published();
    let updates: Vec<ProductUpdated> = published
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::ProductUpdated(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        updates
            .iter()
            .map(|u| (u.version, u.price_cents))
            .collect::<Vec<_>>(),
        vec![(1, 1299), (2, 1499)]
    );
    let adjusted: Vec<(String, i64, i64)> = published
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::StockAdjusted(a)) => {
                Some((a.adjustment_id.clone(), a.delta, a.available))
            }
            _ => None,
        })
        .collect();
    assert_eq!(adjusted.len(), 2, "{adjusted:?}");
    assert_eq!(
        (adjusted[0].0.as_str(), adjusted[0].1, adjusted[0].2),
        ("initial:mug", 7, 7)
    );
    assert!(adjusted[1].0.starts_with("seed:mug:"), "{adjusted:?}");
    assert_eq!((adjusted[1].1, adjusted[1].2), (2, 7));
    let levels = inventory::stock_levels(&h.env.ctx.pool)
        .await
        .expect("levels");
    assert_eq!(
        (levels[0].initial, levels[0].available),
        (9, 7),
        "received 7 then 2; 2 held by o1"
    );
    let cached = h.cached("mug").await.expect("cached");
    assert_eq!(cached.available, 7);
    let bad = inventory::ProductSeed {
        currency: "eur".into(),
        ..seed
    };
    assert!(
        inventory::upsert_products(&h.env.ctx, &[bad])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_cache_entry_that_differs_from_postgres_is_reported() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    assert!(
        inventory::cache_disagreements(&h.env.ctx)
            .await
            .expect("check")
            .is_empty()
    );
    let cache = inventory::RedisStockCache::from_context(&h.env.ctx);
    cache
        .put_many(&[(
            "a".to_string(),
            StockFigure {
                version: 99,
                available: 1,
            },
        )])
        .await
        .expect("write");
    let lines = inventory::cache_disagreements(&h.env.ctx)
        .await
        .expect("check");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("a"), "{}", lines[0]);
}

#[tokio::test]
async fn with_redis_down_reservations_still_commit() {
    let env =
        shared::testing::TestEnv::with_config(|c| c.redis_url = "redis://127.0.0.1:1".into()).await;
    let h = Harness::from_env(env).await;
    h.seed(&[("a", 2)]).await;
    let report = h.reserve(&[created("o1", &[("a", 1)])]).await;
    assert_eq!(report.processed, 1);
    assert_eq!(h.available("a").await, 1);
    let (status, source, body) = h
        .get(
            "GET /products/{id}/stock",
            "/products/a/stock",
            &[("id", "a")],
            &[],
        )
        .await;
    assert_eq!((status, source.as_deref()), (200, Some("database")));
    assert_eq!(body["available"], 1);
}

#[tokio::test]
async fn one_chunk_decides_as_its_messages_would_one_by_one() {
    let h = Harness::new().await;
    h.seed(&[("last", 2), ("plenty", 100)]).await;
    // A tombstone for o5: its cancel came first.
    h.release(&[cancelled("o5")]).await;
    let o1 = created("o1", &[("last", 1), ("plenty", 3)]);
    let report = h
        .reserve(&[
            o1.clone(),
            created("o2", &[("last", 2)]), // only one left after o1: rejected
            created("o3", &[("last", 1)]), // takes the last one
            created("o4", &[("nope", 1)]),
            created("o5", &[("plenty", 1)]),
            o1.clone(), // the same event again in the chunk: applied once
        ])
        .await;
    assert_eq!(report.processed, 5, "{report:?}");
    assert_eq!(report.duplicates, 1, "{report:?}");
    assert_eq!(h.available("last").await, 0);
    assert_eq!(h.available("plenty").await, 97);
    assert_eq!(h.status("o1").await.as_deref(), Some("reserved"));
    assert_eq!(h.status("o2").await.as_deref(), Some("rejected"));
    assert_eq!(h.status("o3").await.as_deref(), Some("reserved"));
    assert_eq!(h.status("o4").await.as_deref(), Some("rejected"));
    assert_eq!(h.status("o5").await.as_deref(), Some("cancelled"));
    let rejected: Vec<(String, i32, String)> = rejections(&h.env.published())
        .into_iter()
        .map(|r| (r.order_id, r.reason, r.product_id))
        .collect();
    use shared::contracts::RejectReason;
    assert_eq!(
        rejected,
        vec![
            ("o2".into(), RejectReason::OutOfStock as i32, "last".into()),
            (
                "o4".into(),
                RejectReason::UnknownProduct as i32,
                "nope".into()
            ),
            (
                "o5".into(),
                RejectReason::OrderCancelled as i32,
                String::new()
            ),
        ]
    );
    // The ledger has one row per reserved line, nothing for the rejected orders.
    let rows: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT order_id, product_id, delta FROM inventory.stock_movements
         WHERE kind = 'reserve' ORDER BY order_id, product_id",
    )
    .fetch_all(&h.env.ctx.pool)
    .await
    .expect("ledger");
    assert_eq!(
        rows,
        vec![
            ("o1".into(), "last".into(), -1),
            ("o1".into(), "plenty".into(), -3),
            ("o3".into(), "last".into(), -1),
        ]
    );
    assert_eq!(h.cached("last").await.map(|f| f.available), Some(0));
}

#[tokio::test]
async fn an_invalid_message_in_a_chunk_is_parked_alone_and_the_rest_reserved() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    let report = h
        .reserve(&[
            created("o1", &[("a", 1)]),
            created("bad", &[]),
            created("o2", &[("a", 2)]),
        ])
        .await;
    assert_eq!(report.processed, 2, "{report:?}");
    assert_eq!(report.parked.len(), 1);
    assert!(report.parked[0].reason.contains("no items"));
    assert_eq!(h.available("a").await, 2);
}
