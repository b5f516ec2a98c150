//! The order after its decision, against real Postgres: the customer's cancel (also racing
//! the saga), shipping and delivery by an admin, and the shipping address and product names
//! kept at purchase.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, payment, rejected, reserved};
use serde_json::{Value, json};
use shared::contracts::{CancelReason, Payload};

fn reason_of(env: &shared::Envelope) -> Option<CancelReason> {
    match env.payload() {
        Payload::OrderCancelled(c) => CancelReason::try_from(c.reason).ok(),
        _ => None,
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

const SHIPMENT: &str = r#"{"carrier":"DHL","tracking_number":"JD014600003SE"}"#;

// ---- customer cancel -------------------------------------------------------------------

#[tokio::test]
async fn a_cancel_before_the_results_cancels_the_order_and_the_late_results_confirm_nothing() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_visa").await;

    let (status, body) = h.cancel_order(Some(&user.token), &id.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"order_id": id, "status": "CANCELLED", "reason": "customer_cancelled"})
    );
    let row = h.order_row(id).await;
    assert_eq!(
        (row.status.as_str(), row.reason.as_deref()),
        ("CANCELLED", Some("customer_cancelled"))
    );
    let cancelled = h.published_of(id, "order.cancelled");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(
        reason_of(&cancelled[0]),
        Some(CancelReason::CustomerCancelled)
    );

    // The stock and payment results arrive afterwards: nothing is decided again.
    let report = h
        .to_saga(&[reserved(&created), payment(&created, true)])
        .await;
    assert_eq!(report["processed"], 2, "{report}");
    assert!(h.published_of(id, "order.confirmed").is_empty());
    assert_eq!(h.decisions(id).len(), 1);
    let row = h.order_row(id).await;
    assert_eq!(row.reason.as_deref(), Some("customer_cancelled"));
}

#[tokio::test]
async fn a_cancel_after_the_confirmation_cancels_the_confirmed_order_with_order_cancelled() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, _) = h.confirmed(&user).await;

    let (status, body) = h.cancel_order(Some(&user.token), &id.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reason"], "customer_cancelled");
    let decisions: Vec<String> = h
        .decisions(id)
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(decisions, ["order.confirmed", "order.cancelled"]);
    let cancelled = &h.published_of(id, "order.cancelled")[0];
    assert_eq!(reason_of(cancelled), Some(CancelReason::CustomerCancelled));
    let Payload::OrderCancelled(c) = cancelled.payload() else {
        panic!("not order.cancelled")
    };
    assert_eq!(c.customer_email, user.email);
    assert_eq!(h.outbox_count(id, "order.cancelled").await, 1);
    let (_, view) = h.get_order(&user.token, &id.to_string()).await;
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str()),
        (Some("CANCELLED"), Some("customer_cancelled"))
    );
}

#[tokio::test]
async fn a_cancel_racing_the_saga_results_ends_cancelled_with_at_most_one_confirmation_before_it() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    for _ in 0..6 {
        let (id, created) = h.place(&user, "tok_visa").await;
        let id_s = id.to_string();
        let results = [reserved(&created), payment(&created, true)];
        let ((status, body), _) = tokio::join!(
            h.cancel_order(Some(&user.token), &id_s),
            h.to_saga(&results)
        );
        assert_eq!(status, 200, "{body}");
        let row = h.order_row(id).await;
        assert_eq!(row.reason.as_deref(), Some("customer_cancelled"));
        let decisions: Vec<String> = h
            .decisions(id)
            .iter()
            .map(|e| e.event_type.clone())
            .collect();
        assert!(
            decisions == ["order.cancelled"] || decisions == ["order.confirmed", "order.cancelled"],
            "{decisions:?}"
        );
    }
}

#[tokio::test]
async fn a_retried_cancel_answers_the_same_and_publishes_nothing_more() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, _) = h.place(&user, "tok_visa").await;
    let first = h.cancel_order(Some(&user.token), &id.to_string()).await;
    let again = h.cancel_order(Some(&user.token), &id.to_string()).await;
    assert_eq!(first, again);
    assert_eq!(again.0, 200);
    assert_eq!(h.outbox_count(id, "order.cancelled").await, 1);
}

#[tokio::test]
async fn cancel_needs_a_session_and_the_callers_own_existing_order() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let other = h.user().await;
    let (id, _) = h.place(&user, "tok_visa").await;

    let (status, body) = h.cancel_order(None, &id.to_string()).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, body) = h.cancel_order(Some(&other.token), &id.to_string()).await;
    assert_eq!(
        (status, code(&body)),
        (404, "not_found"),
        "someone else's order"
    );
    let (status, _) = h
        .cancel_order(Some(&user.token), &uuid::Uuid::now_v7().to_string())
        .await;
    assert_eq!(status, 404);
    let (status, _) = h.cancel_order(Some(&user.token), "not-a-uuid").await;
    assert_eq!(status, 404);
    assert_eq!(h.order_row(id).await.status, "PENDING", "nothing changed");
}

#[tokio::test]
async fn an_order_cancelled_for_another_reason_shipped_or_delivered_is_not_cancellable() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let admin = h.admin().await;

    let (declined, created) = h.place(&user, "tok_chargeDeclined").await;
    h.to_saga(&[rejected(&created), payment(&created, false)])
        .await;
    let (status, body) = h
        .cancel_order(Some(&user.token), &declined.to_string())
        .await;
    assert_eq!((status, code(&body)), (409, "not_cancellable"), "{body}");
    assert_eq!(
        h.order_row(declined).await.reason.as_deref(),
        Some("out_of_stock")
    );

    let (shipped, _) = h.confirmed(&user).await;
    let (s, _) = h
        .admin_post(
            Some(&admin.token),
            "ship",
            &shipped.to_string(),
            Some(SHIPMENT),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (status, body) = h
        .cancel_order(Some(&user.token), &shipped.to_string())
        .await;
    assert_eq!((status, code(&body)), (409, "not_cancellable"), "{body}");

    let (s, _) = h
        .admin_post(
            Some(&admin.token),
            "deliver",
            &shipped.to_string(),
            None,
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (status, body) = h
        .cancel_order(Some(&user.token), &shipped.to_string())
        .await;
    assert_eq!((status, code(&body)), (409, "not_cancellable"), "{body}");
    assert_eq!(h.order_row(shipped).await.status, "DELIVERED");
    assert!(h.published_of(shipped, "order.cancelled").is_empty());
}

// ---- ship and deliver ------------------------------------------------------------------

#[tokio::test]
async fn an_admin_ships_a_confirmed_order_then_delivers_it_each_once() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let admin = h.admin().await;
    let (id, _) = h.confirmed(&user).await;
    let id_s = id.to_string();

    let (status, shipped) = h
        .admin_post(Some(&admin.token), "ship", &id_s, Some(SHIPMENT), None)
        .await;
    assert_eq!(status, 200, "{shipped}");
    assert_eq!(shipped["status"], "SHIPPED");
    assert_eq!(shipped["carrier"], "DHL");
    assert_eq!(shipped["tracking_number"], "JD014600003SE");
    assert!(shipped["shipped_at"].is_string());
    assert!(shipped["delivered_at"].is_null());
    let events = h.published_of(id, "order.shipped");
    assert_eq!(events.len(), 1);
    let Payload::OrderShipped(e) = events[0].payload() else {
        panic!("not order.shipped")
    };
    assert_eq!(
        (e.carrier.as_str(), e.tracking_number.as_str()),
        ("DHL", "JD014600003SE")
    );
    assert_eq!(e.items.len(), 1);
    assert_eq!(
        (
            e.items[0].product_id.as_str(),
            e.items[0].quantity,
            e.items[0].unit_price_cents
        ),
        ("sku-1", 2, 1999)
    );
    assert_eq!(e.customer_email, user.email);

    // The same shipment again: the same answer, nothing new.
    let again = h
        .admin_post(Some(&admin.token), "ship", &id_s, Some(SHIPMENT), None)
        .await;
    assert_eq!(again, (200, shipped.clone()));
    // Another tracking number on a shipped order is refused.
    let other = r#"{"carrier":"DHL","tracking_number":"JD999"}"#;
    let (status, body) = h
        .admin_post(Some(&admin.token), "ship", &id_s, Some(other), None)
        .await;
    assert_eq!((status, code(&body)), (409, "not_shippable"));
    assert_eq!(h.outbox_count(id, "order.shipped").await, 1);

    let (status, delivered) = h
        .admin_post(Some(&admin.token), "deliver", &id_s, None, None)
        .await;
    assert_eq!(status, 200, "{delivered}");
    assert_eq!(delivered["status"], "DELIVERED");
    assert_eq!(delivered["shipped_at"], shipped["shipped_at"]);
    assert!(delivered["delivered_at"].is_string());
    assert_eq!(h.published_of(id, "order.delivered").len(), 1);
    let again = h
        .admin_post(Some(&admin.token), "deliver", &id_s, None, None)
        .await;
    assert_eq!(again, (200, delivered.clone()));
    assert_eq!(h.outbox_count(id, "order.delivered").await, 1);
    let (status, body) = h
        .admin_post(Some(&admin.token), "ship", &id_s, Some(SHIPMENT), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (409, "not_shippable"),
        "a delivered order does not ship again"
    );

    let (_, view) = h.get_order(&user.token, &id_s).await;
    assert_eq!(view["status"], "DELIVERED");
    assert_eq!(view["shipment"]["carrier"], "DHL");
    assert_eq!(view["shipment"]["tracking_number"], "JD014600003SE");
    assert_eq!(view["shipment"]["delivered_at"], delivered["delivered_at"]);
    let row = h.order_row(id).await;
    assert!(row.shipped_at.is_some() && row.delivered_at.is_some());
}

#[tokio::test]
async fn only_a_confirmed_order_ships_and_only_a_shipped_one_is_delivered() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let admin = h.admin().await;
    let (pending, _) = h.place(&user, "tok_visa").await;
    let (status, body) = h
        .admin_post(
            Some(&admin.token),
            "ship",
            &pending.to_string(),
            Some(SHIPMENT),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (409, "not_shippable"), "{body}");
    let (status, body) = h
        .admin_post(
            Some(&admin.token),
            "deliver",
            &pending.to_string(),
            None,
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (409, "not_deliverable"), "{body}");

    let (confirmed, _) = h.confirmed(&user).await;
    let (status, body) = h
        .admin_post(
            Some(&admin.token),
            "deliver",
            &confirmed.to_string(),
            None,
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (409, "not_deliverable"), "{body}");

    let (cancelled, _) = h.place(&user, "tok_visa").await;
    h.cancel_order(Some(&user.token), &cancelled.to_string())
        .await;
    let (status, body) = h
        .admin_post(
            Some(&admin.token),
            "ship",
            &cancelled.to_string(),
            Some(SHIPMENT),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (409, "not_shippable"), "{body}");
    for id in [pending, confirmed, cancelled] {
        assert!(h.published_of(id, "order.shipped").is_empty());
        assert!(h.published_of(id, "order.delivered").is_empty());
    }
}

#[tokio::test]
async fn the_admin_routes_answer_401_without_a_session_403_to_a_customer_and_404_to_an_unknown_order()
 {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let admin = h.admin().await;
    let (id, _) = h.confirmed(&user).await;
    let id_s = id.to_string();
    for action in ["ship", "deliver", "refunds"] {
        let body = if action == "refunds" {
            r#"{"amount_cents":1}"#
        } else {
            SHIPMENT
        };
        let (status, b) = h
            .admin_post(None, action, &id_s, Some(body), Some("k1"))
            .await;
        assert_eq!((status, code(&b)), (401, "unauthorized"), "{action}");
        let (status, b) = h
            .admin_post(Some(&user.token), action, &id_s, Some(body), Some("k1"))
            .await;
        assert_eq!((status, code(&b)), (403, "forbidden"), "{action}");
        let unknown = uuid::Uuid::now_v7().to_string();
        let (status, b) = h
            .admin_post(Some(&admin.token), action, &unknown, Some(body), Some("k1"))
            .await;
        assert_eq!((status, code(&b)), (404, "not_found"), "{action}");
    }
    assert_eq!(h.order_row(id).await.status, "CONFIRMED");
}

#[tokio::test]
async fn a_malformed_shipment_is_400() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let admin = h.admin().await;
    let (id, _) = h.confirmed(&user).await;
    for body in [
        r#"{"carrier":"","tracking_number":"X1"}"#,
        r#"{"carrier":"DHL","tracking_number":"X 1"}"#,
        r#"{"carrier":"DHL"}"#,
        "not json",
    ] {
        let (status, b) = h
            .admin_post(
                Some(&admin.token),
                "ship",
                &id.to_string(),
                Some(body),
                None,
            )
            .await;
        assert_eq!((status, code(&b)), (400, "invalid_request"), "{body}: {b}");
    }
    assert_eq!(h.order_row(id).await.status, "CONFIRMED");
}

// ---- address and names at purchase -----------------------------------------------------

fn with_address(country: &str, city: &str) -> String {
    format!(
        r#"{{"items":[{{"product_id":"sku-1","quantity":1}}],"payment_token":"tok_visa","shipping_address":{{"name":"Ada Lovelace","line1":"12 St James's Square","city":"{city}","postal_code":"SW1Y 4JH","country":"{country}"}}}}"#
    )
}

#[tokio::test]
async fn the_shipping_address_and_the_product_name_are_kept_with_the_order() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (status, answer) = h
        .post_order(Some(&user.token), &with_address("GB", "London"), None)
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["order_id"].as_str().unwrap().to_string();
    // A rename after the purchase does not rewrite the order.
    h.deliver(
        &h.catalog,
        "order-catalog",
        &[common::product("sku-1", 2500, "EUR", 2)],
    )
    .await;
    let (_, view) = h.get_order(&user.token, &id).await;
    assert_eq!(
        view["shipping_address"],
        json!({"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"})
    );
    assert_eq!(view["items"][0]["name"], "Product sku-1");
    assert_eq!(view["items"][0]["unit_price_cents"], 1999);
    assert!(view["shipment"].is_null());
    assert_eq!(view["refunds"], json!([]));

    let (plain, _) = h.place(&user, "tok_visa").await;
    let (_, view) = h.get_order(&user.token, &plain.to_string()).await;
    assert!(
        view["shipping_address"].is_null(),
        "optional for existing clients"
    );
}

#[tokio::test]
async fn a_bad_shipping_address_is_400_and_creates_nothing() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    for (body, says) in [
        (with_address("gb", "London"), "country"),
        (with_address("XX", "London"), "country"),
        (with_address("GB", "  "), "city"),
        (with_address("GB", &"x".repeat(101)), "city"),
    ] {
        let (status, answer) = h.post_order(Some(&user.token), &body, None).await;
        assert_eq!(
            (status, code(&answer)),
            (400, "invalid_request"),
            "{answer}"
        );
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    let missing_line1 = r#"{"items":[{"product_id":"sku-1","quantity":1}],"payment_token":"tok_visa","shipping_address":{"name":"A","city":"B","postal_code":"1","country":"FR"}}"#;
    let (status, _) = h.post_order(Some(&user.token), missing_line1, None).await;
    assert_eq!(status, 400);
    assert!(h.env.published().is_empty(), "no order.created");
}

#[tokio::test]
async fn the_address_is_part_of_the_idempotency_request_hash() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (status, first) = h
        .post_order(
            Some(&user.token),
            &with_address("GB", "London"),
            Some("addr-1"),
        )
        .await;
    assert_eq!(status, 202);
    let again = h
        .post_order(
            Some(&user.token),
            &with_address("GB", "London"),
            Some("addr-1"),
        )
        .await;
    assert_eq!(again, (202, first));
    let (status, body) = h
        .post_order(
            Some(&user.token),
            &with_address("GB", "Bath"),
            Some("addr-1"),
        )
        .await;
    assert_eq!((status, code(&body)), (422, "idempotency_key_reused"));
}

// ---- timeline --------------------------------------------------------------------------

#[tokio::test]
async fn the_timeline_records_shipment_delivery_and_refund_events_with_their_detail() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let admin = h.admin().await;
    let (id, _) = h.confirmed(&user).await;
    let id_s = id.to_string();
    h.admin_post(Some(&admin.token), "ship", &id_s, Some(SHIPMENT), None)
        .await;
    h.admin_post(Some(&admin.token), "deliver", &id_s, None, None)
        .await;
    let (_, r) = h
        .admin_post(
            Some(&admin.token),
            "refunds",
            &id_s,
            Some(r#"{"amount_cents":500}"#),
            Some("t1"),
        )
        .await;
    let refund_id = r["refund_id"].as_str().unwrap().to_string();
    let requested = h.published_of(id, "refund.requested").remove(0);
    let outcome = shared::Envelope::new(
        Payload::PaymentRefunded(shared::contracts::PaymentRefunded {
            order_id: id_s.clone(),
            refund_id: refund_id.clone(),
            amount_cents: 500,
            currency: "EUR".into(),
            ..Default::default()
        }),
        Some(&requested),
    );
    let failed = shared::Envelope::new(
        Payload::PaymentRefundFailed(shared::contracts::PaymentRefundFailed {
            order_id: id_s.clone(),
            refund_id,
            amount_cents: 500,
            currency: "EUR".into(),
            reason: "gateway_declined".into(),
        }),
        Some(&requested),
    );
    let mut seen: Vec<shared::Envelope> = h
        .env
        .published()
        .into_iter()
        .filter(|e| e.correlation_id == id_s)
        .collect();
    seen.extend([outcome, failed]);
    let report = h.to_timeline(&seen).await;
    assert_eq!(report["parked"], json!([]), "{report}");
    let (_, view) = h.get_order(&user.token, &id_s).await;
    let details: Vec<(String, String)> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["event_type"].as_str().unwrap().into(),
                t["detail"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (kind, detail) in [
        (
            "order.shipped",
            "1 line(s), 2 unit(s) via DHL (JD014600003SE)",
        ),
        ("order.delivered", "delivered"),
        ("refund.requested", "refund 5.00 EUR requested"),
        ("payment.refunded", "refunded 5.00 EUR"),
        (
            "payment.refund_failed",
            "refund of 5.00 EUR failed: gateway_declined",
        ),
    ] {
        assert!(
            details.contains(&(kind.to_string(), detail.to_string())),
            "{kind}: {details:?}"
        );
    }
}
