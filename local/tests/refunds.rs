//! Refunds through the whole stack on the real servers: a refund.requested (as the order
//! service publishes it) reaches payment-refund through the broker and the bridge, is paid
//! back once however often it is delivered, is notified once, and `verify` passes after it.

mod common;

use serde_json::json;
use shared::contracts::{Payload, RefundRequested};
use shared::{Encoding, Envelope};
use std::time::{Duration, Instant};

fn refund(order_id: &str, refund_id: &str, amount_cents: i64) -> Envelope {
    Envelope::new(
        Payload::RefundRequested(RefundRequested {
            order_id: order_id.into(),
            refund_id: refund_id.into(),
            amount_cents,
            currency: "EUR".into(),
            items: vec![],
            restock: false,
            reason: "arrived broken".into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
        }),
        None,
    )
}

async fn publish(app: &common::App, events: &[Envelope]) {
    let ctx = &app.stack.ctx;
    let msgs: Vec<_> = events
        .iter()
        .map(|e| shared::publisher::OutMessage::event(&ctx.names, e, Encoding::Protobuf))
        .collect();
    ctx.publisher.publish(&msgs).await.expect("published");
}

/// `(outcome, count)` of the order's refund rows in the payments ledger, once `n` exist.
async fn refund_rows(app: &common::App, order_id: &str, n: usize) -> Vec<(String, i64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT outcome, amount_cents FROM payments.ledger
             WHERE order_id = $1 AND kind = 'refund' ORDER BY recorded_at",
        )
        .bind(order_id)
        .fetch_all(&app.stack.ctx.pool)
        .await
        .expect("ledger");
        if rows.len() >= n {
            return rows;
        }
        assert!(Instant::now() < deadline, "no refund after 30 s: {rows:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_delivered_three_times_is_paid_once_notified_once_and_verify_passes() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 10)]).await;
    let token = app.user().await;
    let order_id = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 2}]),
            "tok_visa",
        )
        .await;
    assert_eq!(
        app.final_state(&token, &order_id).await["status"],
        "CONFIRMED"
    );

    // The same envelope twice (a redelivery) and the same refund re-published under a new
    // event id, then a refund of more than is left.
    // Refund ids are UUIDs, as order-admin mints them (the order service records the
    // outcome of each).
    let (r1, r2) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let first = refund(&order_id, &r1, 500);
    publish(&app, &[first.clone(), first, refund(&order_id, &r1, 500)]).await;
    assert_eq!(
        refund_rows(&app, &order_id, 1).await,
        vec![("succeeded".into(), 500)]
    );
    publish(&app, &[refund(&order_id, &r2, 1501)]).await;
    app.quiet().await;
    assert_eq!(
        refund_rows(&app, &order_id, 1).await,
        vec![("succeeded".into(), 500)],
        "the refund above what is left never reached the gateway"
    );
    let calls: Vec<(String, i32)> = sqlx::query_as(
        "SELECT idempotency_key, calls FROM gateway_sim.calls
         WHERE order_id = $1 AND kind = 'refund'",
    )
    .bind(&order_id)
    .fetch_all(&app.stack.ctx.pool)
    .await
    .expect("gateway");
    assert_eq!(calls, vec![(format!("refund:{r1}"), 1)], "one gateway call");
    let notes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications.notifications
         WHERE order_id = $1 AND kind = 'order_refunded'",
    )
    .bind(&order_id)
    .fetch_one(&app.stack.ctx.pool)
    .await
    .expect("notifications");
    assert_eq!(notes, 1);
    app.verify().await;
    app.stop().await;
}
