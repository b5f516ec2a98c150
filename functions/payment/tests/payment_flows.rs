//! Payment functions against the real local Postgres, with a recording publisher.

mod common;

use common::*;
use shared::contracts::*;
use shared::runner::BatchReport;
use shared::{Encoding, Envelope};
use std::sync::Arc;

#[tokio::test]
async fn a_visa_token_is_authorized_and_reported_as_success() {
    let h = Harness::new().await;
    let report = h.process(&[created("o1", "tok_visa", 3998)]).await;
    assert_eq!(report.processed, 1);
    let p = h.processed();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].status, PaymentStatus::Success as i32);
    assert_eq!(
        (
            p[0].amount_cents,
            p[0].currency.as_str(),
            p[0].last4.as_str()
        ),
        (3998, "EUR", "4242")
    );
    assert!(uuid::Uuid::parse_str(&p[0].payment_id).is_ok());
    assert!(p[0].decline_code.is_empty());
    let row = h.row("o1").await.expect("row");
    assert_eq!(
        (row.status.as_str(), row.amount_cents),
        ("authorized", 3998)
    );
    let (token, last4, code) = h.stored("o1").await;
    assert_eq!(
        (token.as_deref(), last4.as_deref(), code),
        (Some("tok_...visa"), Some("4242"), None),
        "only the token's reference is kept"
    );
}

/// `created` with the token's seal replaced by `edit`.
fn with_seal(env: Envelope, edit: impl FnOnce(&mut OrderCreated)) -> Envelope {
    let mut env = env;
    if let Some(Payload::OrderCreated(order)) = env.payload.as_mut() {
        edit(order);
    }
    env
}

#[tokio::test]
async fn a_token_sealed_for_another_order_or_altered_is_parked_and_the_parked_copy_shows_only_the_reference()
 {
    let h = Harness::new().await;
    let keys = shared::payment_token::TokenKeys::development();
    let moved = with_seal(created("o1", "tok_visa", 100), |o| {
        o.payment_token_sealed = keys.seal("o-other", "tok_visa");
    });
    let altered = with_seal(created("o2", "tok_visa", 100), |o| {
        o.payment_token_sealed.pop();
        o.payment_token_sealed.push('x');
    });
    let report = h.process(&[moved, altered]).await;
    assert_eq!(report.parked.len(), 2, "{report:?}");
    assert!(h.processed().is_empty(), "no authorization");
    assert!(
        gateway_calls(&h).await.is_empty(),
        "the gateway was never asked"
    );
    for parked in h.env.parked() {
        let body = String::from_utf8_lossy(&parked.body);
        assert!(
            !body.contains("tok_visa"),
            "a parked copy carries the token"
        );
        assert!(body.contains("tok_...visa"), "a parked copy names the card");
        let reason = format!("{:?}", parked.header(shared::topology::parked::REASON));
        assert!(!reason.contains("tok_visa"), "{reason}");
    }
}

#[tokio::test]
async fn an_order_created_published_before_tokens_were_sealed_is_still_authorized() {
    let h = Harness::new().await;
    let legacy = with_seal(created("o1", "tok_visa", 100), |o| {
        o.payment_token_sealed.clear();
        o.payment_token = "tok_visa".into();
    });
    let report = h.process(&[legacy]).await;
    assert_eq!(report.processed, 1, "{report:?}");
    assert_eq!(h.processed()[0].status, PaymentStatus::Success as i32);
    assert_eq!(h.stored("o1").await.0.as_deref(), Some("tok_...visa"));
}

#[tokio::test]
async fn declined_tokens_are_reported_as_failed_with_their_code() {
    let h = Harness::new().await;
    h.process(&[
        created("o1", "tok_chargeDeclined", 100),
        created("o2", "tok_chargeDeclinedInsufficientFunds", 100),
        created("o3", "tok_doesNotExist", 100),
    ])
    .await;
    let p = h.processed();
    let codes: Vec<(&str, i32, &str)> = p
        .iter()
        .map(|p| (p.order_id.as_str(), p.status, p.decline_code.as_str()))
        .collect();
    let failed = PaymentStatus::Failed as i32;
    assert_eq!(
        codes,
        vec![
            ("o1", failed, "card_declined"),
            ("o2", failed, "insufficient_funds"),
            ("o3", failed, "invalid_token")
        ]
    );
    for o in ["o1", "o2", "o3"] {
        assert_eq!(h.row(o).await.expect("row").status, "declined");
    }
    assert_eq!(
        h.stored("o2").await.2.as_deref(),
        Some("insufficient_funds")
    );
}

#[tokio::test]
async fn a_token_that_is_not_a_tok_is_parked_with_the_reason_and_stores_nothing() {
    let h = Harness::new().await;
    let report = h.process(&[created("o1", "4242424242424242", 100)]).await;
    assert_eq!(report.parked.len(), 1);
    assert!(
        report.parked[0].reason.contains("tok_"),
        "{}",
        report.parked[0].reason
    );
    let parked = h.env.parked();
    assert_eq!(parked.len(), 1);
    let reason = parked[0]
        .header(shared::topology::parked::REASON)
        .expect("reason header");
    assert!(format!("{reason:?}").contains("tok_"));
    assert!(h.processed().is_empty());
    assert!(
        h.row("o1").await.is_none(),
        "no row, and above all no card number"
    );
}

#[tokio::test]
async fn an_unexpected_event_type_is_parked() {
    let h = Harness::new().await;
    let report = h.process(&[confirmed("o1", 100)]).await;
    assert_eq!(report.parked.len(), 1);
    assert!(
        report.parked[0]
            .reason
            .contains("unexpected event type order.confirmed")
    );
}

#[tokio::test]
async fn confirmation_captures_the_authorized_amount_once() {
    let h = Harness::new().await;
    h.process(&[created("o1", "tok_mastercard", 2500)]).await;
    let payment_id = h.processed()[0].payment_id.clone();
    let confirm = confirmed("o1", 2500);
    h.settle(std::slice::from_ref(&confirm)).await;
    let again = h.settle(std::slice::from_ref(&confirm)).await;
    assert_eq!(again.duplicates, 1);
    // A redelivered copy under a new event id is also harmless.
    h.settle(&[confirmed("o1", 2500)]).await;
    let captured: Vec<PaymentCaptured> = h
        .env
        .published()
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(Payload::PaymentCaptured(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(captured.len(), 1);
    assert_eq!(
        (
            captured[0].payment_id.as_str(),
            captured[0].amount_cents,
            captured[0].currency.as_str()
        ),
        (payment_id.as_str(), 2500, "EUR")
    );
    assert_eq!(h.row("o1").await.expect("row").status, "captured");
}

#[tokio::test]
async fn confirmation_without_an_authorization_is_parked() {
    let h = Harness::new().await;
    h.process(&[created("o1", "tok_chargeDeclined", 100)]).await;
    let report = h
        .settle(&[confirmed("o1", 100), confirmed("o2", 100)])
        .await;
    assert_eq!(report.parked.len(), 2);
    assert!(report.parked.iter().all(|p| {
        p.reason
            .contains("order confirmed without an authorized payment")
    }));
    assert!(
        h.row("o2").await.is_none(),
        "the parked message left no row behind"
    );
}

#[tokio::test]
async fn cancellation_voids_the_authorization_once() {
    let h = Harness::new().await;
    h.process(&[created("o1", "tok_visa", 100)]).await;
    let payment_id = h.processed()[0].payment_id.clone();
    let cancel = cancelled("o1");
    h.settle(std::slice::from_ref(&cancel)).await;
    h.settle(&[cancel]).await;
    h.settle(&[cancelled("o1")]).await;
    let voided: Vec<PaymentVoided> = h
        .env
        .published()
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(Payload::PaymentVoided(v)) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(voided.len(), 1);
    assert_eq!(voided[0].payment_id, payment_id);
    assert_eq!(h.row("o1").await.expect("row").status, "voided");
}

#[tokio::test]
async fn cancelling_a_declined_payment_does_nothing() {
    let h = Harness::new().await;
    h.process(&[created("o1", "tok_chargeDeclined", 100)]).await;
    h.env.clear_published();
    let report = h.settle(&[cancelled("o1")]).await;
    assert_eq!(report.processed, 1);
    assert!(h.env.published().is_empty());
    assert_eq!(h.row("o1").await.expect("row").status, "declined");
}

#[tokio::test]
async fn a_cancel_before_the_payment_leaves_a_tombstone_and_the_late_order_is_not_charged() {
    let h = Harness::new().await;
    h.settle(&[cancelled("o1")]).await;
    let published = h.env.published();
    assert_eq!(published.len(), 1);
    match &published[0].payload {
        Some(Payload::PaymentVoided(v)) => {
            assert_eq!((v.order_id.as_str(), v.payment_id.as_str()), ("o1", ""))
        }
        other => panic!("expected payment.voided, got {other:?}"),
    }
    assert_eq!(h.row("o1").await.expect("tombstone").status, "cancelled");
    h.env.clear_published();
    let report = h.process(&[created("o1", "tok_visa", 100)]).await;
    assert_eq!(report.processed, 1);
    assert!(
        h.env.published().is_empty(),
        "no payment.processed for a cancelled order"
    );
    assert_eq!(h.row("o1").await.expect("row").status, "cancelled");
}

#[tokio::test]
async fn a_duplicate_order_created_authorizes_once() {
    let h = Harness::new().await;
    let ev = created("o1", "tok_visa", 100);
    h.process(std::slice::from_ref(&ev)).await;
    let again = h.process(&[ev.clone(), ev]).await;
    assert_eq!(again.duplicates, 2);
    // The same order under a new event id is decided already.
    h.process(&[created("o1", "tok_chargeDeclined", 100)]).await;
    assert_eq!(h.processed().len(), 1);
    assert_eq!(h.row("o1").await.expect("row").status, "authorized");
}

#[tokio::test]
async fn json_encoded_events_are_accepted_too() {
    let h = Harness::new().await;
    let ev = h.env.rmq_event(
        "payment-process",
        &[created("o1", "tok_visa", 100)],
        Encoding::Json,
    );
    let out = h
        .process
        .invoke(serde_json::to_value(&ev).expect("json"))
        .await
        .expect("ok");
    let report: BatchReport = serde_json::from_value(out).expect("report");
    assert_eq!(report.processed, 1);
    assert_eq!(h.processed().len(), 1);
}

/// The simulated gateway, except that the first call's answer is lost on the way back (a
/// timeout after the provider acted): the transaction rolls back and the batch is retried.
struct LosesFirstAnswer {
    inner: payment::gateway::SimulatedGateway,
    lost: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl payment::gateway::PaymentGateway for LosesFirstAnswer {
    async fn authorize(
        &self,
        req: payment::gateway::AuthorizeRequest<'_>,
    ) -> Result<payment::gateway::Authorization, payment::gateway::AuthorizeError> {
        let answer = self.inner.authorize(req).await;
        if !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(payment::gateway::AuthorizeError::Unavailable(
                anyhow::anyhow!("answer lost"),
            ));
        }
        answer
    }
    async fn capture(&self, req: payment::gateway::SettleRequest<'_>) -> anyhow::Result<()> {
        self.inner.capture(req).await
    }
    async fn void(&self, req: payment::gateway::SettleRequest<'_>) -> anyhow::Result<()> {
        self.inner.void(req).await
    }
    async fn refund(
        &self,
        req: payment::gateway::SettleRequest<'_>,
    ) -> Result<payment::gateway::Refund, payment::gateway::RefundError> {
        self.inner.refund(req).await
    }
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_repeats_the_same_gateway_call_instead_of_charging_twice() {
    let h = Harness::new().await;
    let gateway = LosesFirstAnswer {
        inner: payment::gateway::SimulatedGateway::new(&h.env.ctx.config.database_url)
            .expect("gateway"),
        lost: Default::default(),
    };
    let process = payment::functions::process_with(&h.env.ctx, Arc::new(gateway));
    let event = created("o-lost", "tok_visa", 1500);
    let ev = h.env.rmq_event(
        "payment-process",
        std::slice::from_ref(&event),
        Encoding::Protobuf,
    );
    let json = serde_json::to_value(&ev).expect("event json");
    assert!(
        process.invoke(json.clone()).await.is_err(),
        "first answer lost: batch fails"
    );
    assert!(h.row("o-lost").await.is_none_or(|r| r.status == "pending"));
    process.invoke(json).await.expect("the retry succeeds");
    assert_eq!(h.row("o-lost").await.expect("row").status, "authorized");

    let calls = gateway_calls(&h).await;
    assert_eq!(
        calls.len(),
        1,
        "one authorization at the gateway: {calls:?}"
    );
    assert_eq!(calls[0].calls, 2, "asked twice under the same key");
    let ledger: Vec<(String, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT idempotency_key, gateway_ref FROM payments.ledger WHERE order_id = 'o-lost'",
    )
    .fetch_all(&h.env.ctx.pool)
    .await
    .expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].0, calls[0].idempotency_key);
    assert_eq!(
        ledger[0].1, calls[0].payment_id,
        "the retry got the first answer back"
    );
}

#[tokio::test]
async fn every_gateway_call_of_an_order_is_one_ledger_row_keyed_by_its_causing_event() {
    let h = Harness::new().await;
    let create = created("o-led", "tok_visa", 700);
    let confirm = confirmed("o-led", 700);
    h.process(std::slice::from_ref(&create)).await;
    h.settle(std::slice::from_ref(&confirm)).await;
    // Redelivered: the inbox skips both, nothing new at the gateway or in the ledger.
    h.process(std::slice::from_ref(&create)).await;
    h.settle(std::slice::from_ref(&confirm)).await;
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT idempotency_key, kind, outcome, amount_cents FROM payments.ledger
         WHERE order_id = 'o-led' ORDER BY recorded_at",
    )
    .fetch_all(&h.env.ctx.pool)
    .await
    .expect("ledger");
    assert_eq!(
        rows,
        vec![
            (
                format!("authorize:{}", create.event_id),
                "authorize".into(),
                "approved".into(),
                700
            ),
            (
                format!("capture:{}", confirm.event_id),
                "capture".into(),
                "succeeded".into(),
                700
            ),
        ]
    );
    let calls = gateway_calls(&h).await;
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.calls == 1), "{calls:?}");
}

#[tokio::test]
async fn one_chunk_authorizes_as_its_messages_would_one_by_one() {
    let h = Harness::new().await;
    // o4 was cancelled before its payment: a tombstone.
    h.settle(&[cancelled("o4")]).await;
    let o1 = created("o1", "tok_visa", 100);
    let report = h
        .process(&[
            o1.clone(),
            created("o2", "tok_chargeDeclined", 200),
            created("o3", "tok_mastercard", 300),
            created("o4", "tok_visa", 400),
            o1.clone(),
        ])
        .await;
    assert_eq!((report.processed, report.duplicates), (4, 1), "{report:?}");
    let mut statuses = Vec::new();
    for id in ["o1", "o2", "o3", "o4"] {
        statuses.push(h.row(id).await.map(|r| r.status));
    }
    assert_eq!(
        statuses,
        ["authorized", "declined", "authorized", "cancelled"].map(|s| Some(s.to_string()))
    );
    let processed: Vec<(String, i32, String)> = h
        .processed()
        .into_iter()
        .map(|p| (p.order_id, p.status, p.decline_code))
        .collect();
    assert_eq!(processed.len(), 3, "{processed:?}");
    assert!(processed.contains(&(
        "o2".into(),
        PaymentStatus::Failed as i32,
        "card_declined".into()
    )));
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM payments.ledger")
        .fetch_one(&h.env.ctx.pool)
        .await
        .expect("ledger");
    assert_eq!(
        ledger, 3,
        "one call per authorized or declined order, none for the tombstone"
    );
    assert_eq!(gateway_calls(&h).await.len(), 3);
}
