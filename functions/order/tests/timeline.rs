//! `order-timeline` and the timeline of `GET /orders/{id}`; traces and saga timings.
#![allow(clippy::unwrap_used)]

mod common;

use aws_lambda_events::http::{HeaderName, HeaderValue};
use common::{Harness, call, payment, product, reserved};
use shared::contracts::{NotificationSent, Payload};
use shared::{Envelope, telemetry};

fn trace_id(tp: &str) -> String {
    telemetry::parse_traceparent(tp)
        .map(|(t, _)| t.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn every_event_of_an_order_is_recorded_once_and_read_back_in_causal_order() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_visa").await;
    let stock = reserved(&created);
    let paid = payment(&created, true);
    h.to_saga(&[stock.clone(), paid.clone()]).await;
    let confirmed = h.decisions(id).pop().unwrap();
    let sent = Envelope::new(
        Payload::NotificationSent(NotificationSent {
            order_id: id.to_string(),
            kind: 2,
            channel: "log".into(),
            notification_id: uuid::Uuid::now_v7().to_string(),
        }),
        Some(&confirmed),
    );
    // Backwards, twice, with an event about no order mixed in.
    let all = [
        sent.clone(),
        confirmed.clone(),
        paid.clone(),
        stock.clone(),
        created.clone(),
        product("sku-9", 1, "EUR", 1),
    ];
    let first = h.to_timeline(&all).await;
    assert_eq!(first["processed"], 6, "{first}");
    let again = h.to_timeline(&all).await;
    assert_eq!(again["duplicates"], 6, "{again}");

    let (_, body) = h.get_order(&user.token, &id.to_string()).await;
    let timeline = body["timeline"].as_array().unwrap();
    let ids: Vec<&str> = timeline
        .iter()
        .map(|t| t["event_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = [&created, &stock, &paid, &confirmed, &sent]
        .iter()
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(ids, want);
    assert_eq!(timeline[0]["causation_id"], serde_json::Value::Null);
    assert_eq!(timeline[3]["causation_id"], paid.event_id);
    assert!(timeline.iter().all(|t| t["recorded_at"].is_string()));
    assert_eq!(timeline[4]["event_type"], "notification.sent");
    assert_eq!(timeline[4]["source"], "observed");
    assert_eq!(timeline[3]["source"], "published");
    assert_eq!(timeline[0]["occurred_at"], timeline[0]["at"]);
}

#[tokio::test]
async fn an_event_delivered_twice_in_one_batch_is_recorded_once_by_the_set_based_path() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_visa").await;
    let stock = reserved(&created);
    let report = h
        .to_timeline(&[created.clone(), stock.clone(), created.clone()])
        .await;
    assert_eq!(
        (report["processed"].as_u64(), report["duplicates"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    let (_, body) = h.get_order(&user.token, &id.to_string()).await;
    let observed = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["event_id"] == created.event_id.as_str())
        .count();
    assert_eq!(observed, 1);
}

#[tokio::test]
async fn a_traceparent_header_makes_the_order_a_child_of_the_callers_trace() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut req = shared::http::request("POST", "/orders", "POST /orders");
    req.body = Some(
        r#"{"items":[{"product_id":"sku-1","quantity":1}],"payment_token":"tok_visa"}"#.into(),
    );
    for (k, v) in [
        ("authorization", format!("Bearer {}", user.token)),
        ("traceparent", caller.to_string()),
    ] {
        req.headers.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    let (status, body) = call(&h.create, req).await;
    assert_eq!(status, 202, "{body}");
    let created = h
        .env
        .published()
        .into_iter()
        .find(|e| e.event_type == "order.created")
        .unwrap();
    assert_eq!(trace_id(&created.traceparent), trace_id(caller));
    assert_ne!(created.traceparent, caller, "a span of its own");
}

#[tokio::test]
async fn an_expired_order_is_cancelled_in_the_orders_own_trace() {
    let h = Harness::from_env(
        shared::testing::TestEnv::with_config(|c| {
            c.pending_timeout = std::time::Duration::ZERO;
        })
        .await,
    )
    .await;
    h.seed_catalog().await;
    let user = h.user().await;
    let (id, created) = h.place(&user, "tok_visa").await;
    assert_eq!(order::expire_due(&h.env.ctx).await.unwrap(), 1);
    let cancelled = h.decisions(id).pop().unwrap();
    assert_eq!(cancelled.event_type, "order.cancelled");
    assert_eq!(cancelled.causation_id, "", "no event caused it");
    assert_eq!(
        trace_id(&cancelled.traceparent),
        trace_id(&created.traceparent)
    );
    let text = shared::metrics::render();
    assert!(
        text.contains(r#"orderflow_saga_duration_seconds_count{outcome="expired"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn order_gauges_count_every_status_and_the_oldest_pending_order() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    h.place(&user, "tok_visa").await;
    order::record_order_gauges(&h.env.ctx.pool).await.unwrap();
    let text = shared::metrics::render();
    for series in [
        r#"orderflow_orders{reason="none",status="PENDING"}"#,
        r#"orderflow_orders{reason="expired",status="CANCELLED"}"#,
        "orderflow_orders_pending_oldest_seconds",
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
}
