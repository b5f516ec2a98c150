//! `order-saga`, `order-expire` and `order-catalog` against real Postgres.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, payment, product, rejected, reserved};
use shared::contracts::{CancelReason, Payload};
use shared::testing::TestEnv;
use std::time::Duration;

fn cancel_reason(env: &shared::Envelope) -> Option<&'static str> {
    match env.payload() {
        Payload::OrderCancelled(c) => CancelReason::try_from(c.reason)
            .ok()
            .and_then(CancelReason::api_name),
        _ => None,
    }
}

#[tokio::test]
async fn stock_reserved_and_payment_success_confirm_the_order_once() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_visa").await;
    let (reserved_ev, paid) = (reserved(&created), payment(&created, true));
    h.to_saga(std::slice::from_ref(&reserved_ev)).await;
    assert!(
        h.decisions(id).is_empty(),
        "no decision before the payment result"
    );
    h.to_saga(std::slice::from_ref(&paid)).await;

    let row = h.order_row(id).await;
    assert_eq!((row.status.as_str(), row.reason), ("CONFIRMED", None));
    let decisions = h.decisions(id);
    assert_eq!(decisions.len(), 1);
    let Payload::OrderConfirmed(c) = decisions[0].payload() else {
        panic!("not order.confirmed")
    };
    assert_eq!((c.total_cents, c.currency.as_str()), (3998, "EUR"));
    assert_eq!(
        (c.user_id.clone(), c.customer_email.clone()),
        (user.user_id.to_string(), user.email.clone())
    );

    let (_, body) = h.get_order(&user.token, &id.to_string()).await;
    assert_eq!(body["status"], "CONFIRMED");
    // Before order-timeline saw anything, the timeline shows the order service's own events.
    let kinds = timeline_kinds(&body);
    assert_eq!(
        kinds,
        [
            ("order.created".to_string(), "published".to_string()),
            ("order.confirmed".into(), "published".into()),
        ]
    );
    // Delivered backwards, read back in causal order.
    let mut seen = decisions.clone();
    seen.extend([paid, reserved_ev, created.clone()]);
    h.to_timeline(&seen).await;
    let (_, body) = h.get_order(&user.token, &id.to_string()).await;
    assert_eq!(
        timeline_kinds(&body),
        [
            ("order.created".to_string(), "published".to_string()),
            ("stock.reserved".into(), "observed".into()),
            ("payment.processed".into(), "observed".into()),
            ("order.confirmed".into(), "published".into()),
        ]
    );
}

fn timeline_kinds(body: &serde_json::Value) -> Vec<(String, String)> {
    body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["event_type"].as_str().unwrap().into(),
                t["source"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test]
async fn stock_rejected_cancels_out_of_stock_once_the_payment_result_arrives() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_visa").await;
    h.to_saga(&[rejected(&created)]).await;
    assert_eq!(h.order_row(id).await.status, "PENDING");
    assert!(h.decisions(id).is_empty());
    // Even a declined payment does not change the reason: out of stock takes precedence.
    h.to_saga(&[payment(&created, false)]).await;
    let row = h.order_row(id).await;
    assert_eq!(
        (row.status.as_str(), row.reason.as_deref()),
        ("CANCELLED", Some("out_of_stock"))
    );
    let decisions = h.decisions(id);
    assert_eq!(decisions.len(), 1);
    assert_eq!(cancel_reason(&decisions[0]), Some("out_of_stock"));
}

#[tokio::test]
async fn a_declined_payment_cancels_payment_declined_whatever_the_arrival_order() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_chargeDeclined").await;
    h.to_saga(&[payment(&created, false)]).await;
    h.to_saga(&[reserved(&created)]).await;
    let row = h.order_row(id).await;
    assert_eq!(
        (row.status.as_str(), row.reason.as_deref()),
        ("CANCELLED", Some("payment_declined"))
    );
    assert_eq!(
        h.decisions(id)
            .iter()
            .map(cancel_reason)
            .collect::<Vec<_>>(),
        vec![Some("payment_declined")]
    );
}

#[tokio::test]
async fn duplicate_results_never_make_a_second_decision() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_visa").await;
    let (stock, paid) = (reserved(&created), payment(&created, true));
    // The same envelopes redelivered (inbox) and fresh duplicates with new ids (saga).
    h.to_saga(&[stock.clone(), stock.clone()]).await;
    let report = h
        .to_saga(&[
            paid.clone(),
            reserved(&created),
            paid.clone(),
            payment(&created, true),
        ])
        .await;
    assert_eq!(report["duplicates"], 1, "{report}");
    h.to_saga(&[stock, paid]).await;
    assert_eq!(h.order_row(id).await.status, "CONFIRMED");
    // A duplicate inside the batch that committed the decision re-sends that same event
    // (same event id, consumers dedupe it): one decision, however often it travels.
    let ids: std::collections::HashSet<String> =
        h.decisions(id).into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 1);
    assert!(h.env.parked().is_empty());
}

#[tokio::test]
async fn redelivered_results_in_later_batches_publish_nothing_more() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_visa").await;
    let (stock, paid) = (reserved(&created), payment(&created, true));
    h.to_saga(std::slice::from_ref(&stock)).await;
    h.to_saga(std::slice::from_ref(&paid)).await;
    let published = h.env.published().len();
    let report = h
        .to_saga(&[stock, paid, reserved(&created), payment(&created, false)])
        .await;
    assert_eq!(report["duplicates"], 2, "{report}");
    assert_eq!(report["processed"], 2, "{report}");
    assert_eq!(
        h.env.published().len(),
        published,
        "nothing published again"
    );
    assert_eq!(h.decisions(id).len(), 1);
    let row = h.order_row(id).await;
    assert_eq!((row.status.as_str(), row.reason), ("CONFIRMED", None));
}

#[tokio::test]
async fn results_for_an_unknown_order_are_parked() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (_, mut created) = h.place(&user, "tok_visa").await;
    // A result about an order this service never created.
    created.correlation_id = uuid::Uuid::now_v7().to_string();
    let report = h.to_saga(&[reserved(&created)]).await;
    assert_eq!(report["parked"][0]["reason"], "unknown order", "{report}");
    assert_eq!(h.env.parked().len(), 1);
}

#[tokio::test]
async fn an_event_type_not_bound_to_the_saga_is_parked() {
    let h = Harness::seeded().await;
    let report = h.to_saga(&[product("sku-9", 1, "EUR", 1)]).await;
    assert_eq!(
        report["parked"][0]["reason"], "unexpected event type product.updated",
        "{report}"
    );
}

#[tokio::test]
async fn an_order_past_its_deadline_expires_and_late_results_change_nothing() {
    let env = TestEnv::with_config(|c| c.pending_timeout = Duration::ZERO).await;
    let h = Harness::from_env(env).await;
    h.seed_catalog().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_visa").await;

    assert_eq!(order::expire_due(&h.env.ctx).await.unwrap(), 1);
    let row = h.order_row(id).await;
    assert_eq!(
        (row.status.as_str(), row.reason.as_deref()),
        ("CANCELLED", Some("expired"))
    );
    assert_eq!(
        h.decisions(id)
            .iter()
            .map(cancel_reason)
            .collect::<Vec<_>>(),
        vec![Some("expired")]
    );

    h.to_saga(&[reserved(&created), payment(&created, true)])
        .await;
    let row = h.order_row(id).await;
    assert_eq!(
        (row.status.as_str(), row.reason.as_deref()),
        ("CANCELLED", Some("expired"))
    );
    assert_eq!(h.decisions(id).len(), 1, "no decision after expiry");
    assert_eq!(
        order::expire_due(&h.env.ctx).await.unwrap(),
        0,
        "nothing left to expire"
    );
}

#[tokio::test]
async fn the_expiry_schedule_leaves_orders_within_their_deadline_alone() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, _) = h.place(&user, "tok_visa").await;
    let out = order::functions::expire(&h.env.ctx)
        .invoke(serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(out, serde_json::json!({"expired": 0}));
    assert_eq!(h.order_row(id).await.status, "PENDING");
}

#[tokio::test]
async fn the_catalog_only_moves_forward_in_versions() {
    let h = Harness::seeded().await;
    assert_eq!(order::catalog_len(&h.env.ctx.pool).await.unwrap(), 3);
    h.deliver(
        &h.catalog,
        "order-catalog",
        &[product("sku-1", 2500, "EUR", 3)],
    )
    .await;
    h.deliver(
        &h.catalog,
        "order-catalog",
        &[product("sku-1", 1000, "EUR", 2)],
    )
    .await;
    let user = h.user().await;
    let (_, created) = h.place(&user, "tok_visa").await;
    let Payload::OrderCreated(c) = created.payload() else {
        panic!()
    };
    assert_eq!(
        c.items[0].unit_price_cents, 2500,
        "version 3 wins over the late version 2"
    );
    assert_eq!(order::catalog_len(&h.env.ctx.pool).await.unwrap(), 3);
}

#[tokio::test]
async fn an_invalid_product_update_is_parked_with_its_reason() {
    let h = Harness::seeded().await;
    let report = h
        .deliver(&h.catalog, "order-catalog", &[product("", 1, "EUR", 1)])
        .await;
    assert!(
        report["parked"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("product_id"),
        "{report}"
    );
    let report = h
        .deliver(
            &h.catalog,
            "order-catalog",
            &[product("sku-x", -5, "EUR", 1)],
        )
        .await;
    assert!(
        report["parked"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("negative"),
        "{report}"
    );
}

#[tokio::test]
async fn one_chunk_of_results_decides_each_order_as_one_by_one() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (a, ca) = h.place(&user, "tok_visa").await;
    let (b, cb) = h.place(&user, "tok_chargeDeclined").await;
    let (c, cc) = h.place(&user, "tok_visa").await;
    let (d, cd) = h.place(&user, "tok_visa").await;
    let paid_a = payment(&ca, true);
    // Both results of a, b and c in one chunk, in mixed order; d only half; a's payment twice.
    let report = h
        .to_saga(&[
            payment(&cb, false),
            paid_a.clone(),
            rejected(&cc),
            reserved(&ca),
            reserved(&cb),
            payment(&cc, true),
            reserved(&cd),
            paid_a,
        ])
        .await;
    assert_eq!(report["processed"], 7, "{report}");
    assert_eq!(report["duplicates"], 1, "{report}");
    let mut states = Vec::new();
    for id in [a, b, c, d] {
        let o = h.order_row(id).await;
        states.push((o.status, o.reason));
    }
    assert_eq!(
        states,
        vec![
            ("CONFIRMED".into(), None),
            ("CANCELLED".into(), Some("payment_declined".into())),
            ("CANCELLED".into(), Some("out_of_stock".into())),
            ("PENDING".into(), None),
        ]
    );
    for (id, n) in [(a, 1), (b, 1), (c, 1), (d, 0)] {
        assert_eq!(h.decisions(id).len(), n, "{id}");
    }
    assert_eq!(cancel_reason(&h.decisions(c)[0]), Some("out_of_stock"));
}

#[tokio::test]
async fn a_result_for_an_unknown_order_in_a_chunk_is_parked_alone() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (a, ca) = h.place(&user, "tok_visa").await;
    let unknown = shared::Envelope::new(
        Payload::StockReserved(shared::contracts::StockReserved {
            order_id: uuid::Uuid::now_v7().to_string(),
            items: vec![],
        }),
        None,
    );
    let report = h
        .to_saga(&[reserved(&ca), unknown, payment(&ca, true)])
        .await;
    assert_eq!(report["processed"], 2, "{report}");
    assert_eq!(report["parked"][0]["reason"], "unknown order");
    assert_eq!(h.order_row(a).await.status, "CONFIRMED");
}
