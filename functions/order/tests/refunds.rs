//! `POST /admin/orders/{id}/refunds` and the refund outcomes `order-saga` records, against
//! real Postgres: limits, idempotency by key, and redelivered outcomes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, User};
use serde_json::Value;
use shared::Envelope;
use shared::contracts::{Payload, PaymentRefundFailed, PaymentRefunded};
use uuid::Uuid;

/// The confirmed order of `Harness::confirmed`: 2 x sku-1 at 1999 EUR.
const TOTAL: i64 = 3998;

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

async fn refund(h: &Harness, admin: &User, id: Uuid, body: &str, key: &str) -> (u16, Value) {
    h.admin_post(
        Some(&admin.token),
        "refunds",
        &id.to_string(),
        Some(body),
        Some(key),
    )
    .await
}

async fn refund_rows(h: &Harness, id: Uuid) -> Vec<(Uuid, String, i64, String)> {
    sqlx::query_as(
        "SELECT refund_id, kind, amount_cents, status FROM orders.refunds WHERE order_id = $1 ORDER BY created_at",
    )
    .bind(id)
    .fetch_all(&h.env.ctx.pool)
    .await
    .unwrap()
}

fn refunded(id: Uuid, refund_id: &str, amount: i64) -> Envelope {
    Envelope::new(
        Payload::PaymentRefunded(PaymentRefunded {
            order_id: id.to_string(),
            refund_id: refund_id.into(),
            payment_id: Uuid::new_v4().to_string(),
            amount_cents: amount,
            currency: "EUR".into(),
            gateway_refund_id: "re_1".into(),
            ..Default::default()
        }),
        None,
    )
}

fn refund_failed(id: Uuid, refund_id: &str, amount: i64) -> Envelope {
    Envelope::new(
        Payload::PaymentRefundFailed(PaymentRefundFailed {
            order_id: id.to_string(),
            refund_id: refund_id.into(),
            amount_cents: amount,
            currency: "EUR".into(),
            reason: "gateway_declined".into(),
        }),
        None,
    )
}

#[tokio::test]
async fn a_refund_by_amount_is_requested_with_its_event_in_the_same_transaction() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (id, _) = h.confirmed(&user).await;
    let (status, body) = refund(
        &h,
        &admin,
        id,
        r#"{"amount_cents":1000,"reason":"scratched"}"#,
        "r-1",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["order_id"], id.to_string());
    assert_eq!(body["amount_cents"], 1000);
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["status"], "requested");
    let refund_id = body["refund_id"].as_str().unwrap().to_string();
    assert_eq!(Uuid::parse_str(&refund_id).unwrap().get_version_num(), 7);

    let rows = refund_rows(&h, id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2, rows[0].3.as_str()),
        ("admin", 1000, "requested")
    );
    let requested_by: Option<Uuid> = sqlx::query_scalar("SELECT requested_by FROM orders.refunds")
        .fetch_one(&h.env.ctx.pool)
        .await
        .unwrap();
    assert_eq!(requested_by, Some(admin.user_id));

    let events = h.published_of(id, "refund.requested");
    assert_eq!(events.len(), 1);
    let Payload::RefundRequested(e) = events[0].payload() else {
        panic!("not refund.requested")
    };
    assert_eq!(e.refund_id, refund_id);
    assert_eq!((e.amount_cents, e.currency.as_str()), (1000, "EUR"));
    assert!(e.items.is_empty() && !e.restock);
    assert_eq!(e.reason, "scratched");
    assert_eq!(
        (e.user_id.clone(), e.customer_email.clone()),
        (user.user_id.to_string(), user.email.clone())
    );

    let (_, view) = h.get_order(&user.token, &id.to_string()).await;
    assert_eq!(view["refunds"][0]["refund_id"], refund_id.as_str());
    assert_eq!(view["refunds"][0]["status"], "requested");
    assert_eq!(view["refunds"][0]["reason"], "scratched");
    assert_eq!(view["refunds"][0]["restock"], false);
}

#[tokio::test]
async fn a_refund_by_lines_is_priced_at_the_purchase_price_and_may_restock() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (id, _) = h.confirmed(&user).await;
    // The price changed since the purchase: the refund pays back what was paid.
    h.deliver(
        &h.catalog,
        "order-catalog",
        &[common::product("sku-1", 9999, "EUR", 2)],
    )
    .await;
    let body = r#"{"lines":[{"product_id":"sku-1","quantity":1}],"restock":true}"#;
    let (status, answer) = refund(&h, &admin, id, body, "r-lines").await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["amount_cents"], 1999);
    let events = h.published_of(id, "refund.requested");
    let Payload::RefundRequested(e) = events[0].payload() else {
        panic!("not refund.requested")
    };
    assert!(e.restock);
    assert_eq!(e.items.len(), 1);
    assert_eq!(
        (
            e.items[0].product_id.as_str(),
            e.items[0].quantity,
            e.items[0].unit_price_cents
        ),
        ("sku-1", 1, 1999)
    );

    // One unit left of that line: two more are refused, one is fine.
    let two = r#"{"lines":[{"product_id":"sku-1","quantity":2}]}"#;
    let (status, answer) = refund(&h, &admin, id, two, "r-lines-2").await;
    assert_eq!(
        (status, code(&answer)),
        (422, "exceeds_refundable"),
        "{answer}"
    );
    let stranger = r#"{"lines":[{"product_id":"sku-2","quantity":1}]}"#;
    let (status, answer) = refund(&h, &admin, id, stranger, "r-lines-3").await;
    assert_eq!(
        (status, code(&answer)),
        (422, "exceeds_refundable"),
        "a line not bought: {answer}"
    );
    let one = r#"{"lines":[{"product_id":"sku-1","quantity":1}]}"#;
    assert_eq!(refund(&h, &admin, id, one, "r-lines-4").await.0, 202);
    assert_eq!(refund_rows(&h, id).await.len(), 2);
}

#[tokio::test]
async fn the_same_key_twice_gives_one_refund_and_one_event_and_another_body_is_refused() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (id, _) = h.confirmed(&user).await;
    let body = r#"{"amount_cents":500}"#;
    let first = refund(&h, &admin, id, body, "same-key").await;
    assert_eq!(first.0, 202);
    let again = refund(&h, &admin, id, r#"{ "amount_cents" : 500 }"#, "same-key").await;
    assert_eq!(again, first, "the same answer");
    assert_eq!(refund_rows(&h, id).await.len(), 1);
    assert_eq!(h.outbox_count(id, "refund.requested").await, 1);

    let (status, answer) = refund(&h, &admin, id, r#"{"amount_cents":501}"#, "same-key").await;
    assert_eq!((status, code(&answer)), (422, "idempotency_key_reused"));
    assert_eq!(refund_rows(&h, id).await.len(), 1);

    // Concurrent retries of one request still make one refund.
    let body = r#"{"amount_cents":700}"#;
    let (a, b, c) = tokio::join!(
        refund(&h, &admin, id, body, "burst"),
        refund(&h, &admin, id, body, "burst"),
        refund(&h, &admin, id, body, "burst")
    );
    assert_eq!(a.0, 202);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(refund_rows(&h, id).await.len(), 2);
    assert_eq!(h.outbox_count(id, "refund.requested").await, 2);
}

#[tokio::test]
async fn a_refund_key_never_collides_with_an_order_create_key() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (id, _) = h.confirmed(&user).await;
    let order = r#"{"items":[{"product_id":"sku-2","quantity":1}],"payment_token":"tok_visa"}"#;
    let (status, _) = h
        .post_order(Some(&admin.token), order, Some("shared-key"))
        .await;
    assert_eq!(status, 202, "the admin places an order with the key");
    let (status, body) = refund(&h, &admin, id, r#"{"amount_cents":100}"#, "shared-key").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(refund_rows(&h, id).await.len(), 1);
}

#[tokio::test]
async fn refunds_summing_above_the_total_are_refused() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (id, _) = h.confirmed(&user).await;
    let (status, answer) = refund(
        &h,
        &admin,
        id,
        &format!(r#"{{"amount_cents":{}}}"#, TOTAL + 1),
        "over",
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (422, "exceeds_refundable"),
        "{answer}"
    );
    assert_eq!(
        refund(&h, &admin, id, r#"{"amount_cents":3000}"#, "a")
            .await
            .0,
        202
    );
    let (status, answer) = refund(&h, &admin, id, r#"{"amount_cents":999}"#, "b").await;
    assert_eq!(
        (status, code(&answer)),
        (422, "exceeds_refundable"),
        "{answer}"
    );
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("998"),
        "{answer}"
    );
    assert_eq!(
        refund(&h, &admin, id, r#"{"amount_cents":998}"#, "c")
            .await
            .0,
        202
    );
    let rows = refund_rows(&h, id).await;
    assert_eq!(rows.iter().map(|r| r.2).sum::<i64>(), TOTAL);
    assert_eq!(h.outbox_count(id, "refund.requested").await, 2);
}

#[tokio::test]
async fn a_failed_refund_frees_its_amount_again() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (id, _) = h.confirmed(&user).await;
    let (_, answer) = refund(
        &h,
        &admin,
        id,
        &format!(r#"{{"amount_cents":{TOTAL}}}"#),
        "all",
    )
    .await;
    let refund_id = answer["refund_id"].as_str().unwrap();
    h.to_saga(&[refund_failed(id, refund_id, TOTAL)]).await;
    assert_eq!(refund_rows(&h, id).await[0].3, "failed");
    let (status, answer) = refund(
        &h,
        &admin,
        id,
        &format!(r#"{{"amount_cents":{TOTAL}}}"#),
        "all-again",
    )
    .await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test]
async fn malformed_refunds_and_a_missing_key_are_400() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (id, _) = h.confirmed(&user).await;
    let (status, body) = h
        .admin_post(
            Some(&admin.token),
            "refunds",
            &id.to_string(),
            Some(r#"{"amount_cents":100}"#),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    for bad in [
        r#"{"amount_cents":0}"#,
        r#"{"amount_cents":-100}"#,
        r#"{}"#,
        r#"{"amount_cents":100,"lines":[{"product_id":"sku-1","quantity":1}]}"#,
        r#"{"amount_cents":100,"restock":true}"#,
        r#"{"lines":[]}"#,
        r#"{"lines":[{"product_id":"sku-1","quantity":0}]}"#,
        r#"{"amount":100}"#,
    ] {
        let (status, body) = refund(&h, &admin, id, bad, "k").await;
        assert_eq!(
            (status, code(&body)),
            (400, "invalid_request"),
            "{bad}: {body}"
        );
    }
    assert!(refund_rows(&h, id).await.is_empty());
}

#[tokio::test]
async fn only_confirmed_shipped_and_delivered_orders_are_refundable() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (pending, _) = h.place(&user, "tok_visa").await;
    let (status, body) = refund(&h, &admin, pending, r#"{"amount_cents":100}"#, "p").await;
    assert_eq!((status, code(&body)), (409, "not_refundable"), "{body}");
    h.cancel_order(Some(&user.token), &pending.to_string())
        .await;
    let (status, body) = refund(&h, &admin, pending, r#"{"amount_cents":100}"#, "p").await;
    assert_eq!((status, code(&body)), (409, "not_refundable"), "{body}");

    let (shipped, _) = h.confirmed(&user).await;
    let ship = r#"{"carrier":"DHL","tracking_number":"T1"}"#;
    h.admin_post(
        Some(&admin.token),
        "ship",
        &shipped.to_string(),
        Some(ship),
        None,
    )
    .await;
    assert_eq!(
        refund(&h, &admin, shipped, r#"{"amount_cents":100}"#, "s")
            .await
            .0,
        202
    );
    h.admin_post(
        Some(&admin.token),
        "deliver",
        &shipped.to_string(),
        None,
        None,
    )
    .await;
    assert_eq!(
        refund(&h, &admin, shipped, r#"{"amount_cents":100}"#, "d")
            .await
            .0,
        202
    );
    assert!(refund_rows(&h, pending).await.is_empty());
}

#[tokio::test]
async fn payment_refunded_delivered_three_times_updates_the_refund_once() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (id, _) = h.confirmed(&user).await;
    let (_, answer) = refund(&h, &admin, id, r#"{"amount_cents":1200}"#, "r").await;
    let refund_id = answer["refund_id"].as_str().unwrap();
    let outcome = refunded(id, refund_id, 1200);

    let report = h.to_saga(&[outcome.clone(), outcome.clone()]).await;
    assert_eq!(
        (report["processed"].as_u64(), report["duplicates"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    let updated_at = |h: &Harness| {
        let pool = h.env.ctx.pool.clone();
        async move {
            sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
                "SELECT updated_at FROM orders.refunds",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let first = updated_at(&h).await;
    let report = h.to_saga(std::slice::from_ref(&outcome)).await;
    assert_eq!(report["duplicates"], 1, "{report}");
    assert_eq!(updated_at(&h).await, first, "updated once");
    // A contradicting report afterwards (another event) does not undo the refund.
    h.to_saga(&[refund_failed(id, refund_id, 1200)]).await;
    let rows = refund_rows(&h, id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].3, "refunded");
    let (_, view) = h.get_order(&user.token, &id.to_string()).await;
    assert_eq!(view["refunds"][0]["status"], "refunded");
}

#[tokio::test]
async fn the_full_refund_after_a_customer_cancel_is_recorded_as_a_cancel_refund() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, _) = h.confirmed(&user).await;
    h.cancel_order(Some(&user.token), &id.to_string()).await;
    let cancelled = &h.published_of(id, "order.cancelled")[0];
    let report = h.to_saga(&[refunded(id, &cancelled.event_id, TOTAL)]).await;
    assert_eq!(report["processed"], 1, "{report}");
    let rows = refund_rows(&h, id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0.to_string(), cancelled.event_id);
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2, rows[0].3.as_str()),
        ("cancel", TOTAL, "refunded")
    );
    let (_, view) = h.get_order(&user.token, &id.to_string()).await;
    assert_eq!(view["refunds"][0]["amount_cents"], TOTAL);
}

#[tokio::test]
async fn a_refund_outcome_for_an_unknown_order_or_a_malformed_id_is_parked() {
    let h = Harness::seeded().await;
    let report = h
        .to_saga(&[refunded(Uuid::now_v7(), &Uuid::now_v7().to_string(), 100)])
        .await;
    assert_eq!(report["parked"][0]["reason"], "unknown order", "{report}");
    let user = h.user().await;
    let (id, _) = h.confirmed(&user).await;
    let report = h.to_saga(&[refunded(id, "not-a-uuid", 100)]).await;
    assert!(
        report["parked"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("refund id"),
        "{report}"
    );
    assert!(refund_rows(&h, id).await.is_empty());
}

#[tokio::test]
async fn refund_outcomes_mixed_with_saga_results_in_one_batch_are_each_applied() {
    let h = Harness::seeded().await;
    let (user, admin) = (h.user().await, h.admin().await);
    let (paid, _) = h.confirmed(&user).await;
    let (_, answer) = refund(&h, &admin, paid, r#"{"amount_cents":100}"#, "mix").await;
    let refund_id = answer["refund_id"].as_str().unwrap();
    let (pending, created) = h.place(&user, "tok_visa").await;
    let batch = [
        common::reserved(&created),
        refunded(paid, refund_id, 100),
        common::payment(&created, true),
    ];
    let report = h.to_saga(&batch).await;
    assert_eq!(report["processed"], 3, "{report}");
    assert_eq!(h.order_row(pending).await.status, "CONFIRMED");
    assert_eq!(refund_rows(&h, paid).await[0].3, "refunded");
}
