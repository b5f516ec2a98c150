//! Payment functions against the real local Postgres, with a recording publisher.

use payment::PaymentRow;
use shared::contracts::*;
use shared::runner::BatchReport;
use shared::testing::TestEnv;
use shared::{Encoding, Envelope, Function};
use std::sync::Arc;

struct Harness {
    env: TestEnv,
    process: Arc<dyn Function>,
    settle: Arc<dyn Function>,
    refund: Arc<dyn Function>,
}

impl Harness {
    async fn new() -> Self {
        let env = TestEnv::new().await;
        env.migrate(payment::SCHEMA, &payment::MIGRATOR).await;
        let process = payment::functions::process(&env.ctx);
        let settle = payment::functions::settle(&env.ctx);
        let refund = payment::functions::refund(&env.ctx);
        Harness {
            env,
            process,
            settle,
            refund,
        }
    }

    async fn deliver(
        &self,
        f: &Arc<dyn Function>,
        queue: &str,
        events: &[Envelope],
    ) -> BatchReport {
        let ev = self.env.rmq_event(queue, events, Encoding::Protobuf);
        let out = f
            .invoke(serde_json::to_value(&ev).expect("event json"))
            .await
            .expect("invocation succeeds");
        serde_json::from_value(out).expect("batch report")
    }

    async fn process(&self, events: &[Envelope]) -> BatchReport {
        self.deliver(&self.process, "payment-process", events).await
    }

    async fn settle(&self, events: &[Envelope]) -> BatchReport {
        self.deliver(&self.settle, "payment-settle", events).await
    }

    async fn refund(&self, events: &[Envelope]) -> BatchReport {
        self.deliver(&self.refund, "payment-refund", events).await
    }

    /// An order authorized and captured for `total`.
    async fn captured(&self, order_id: &str, total: i64) {
        self.process(&[created(order_id, "tok_visa", total)]).await;
        self.settle(&[confirmed(order_id, total)]).await;
        assert_eq!(
            self.row(order_id).await.expect("row").status,
            "captured",
            "{order_id}"
        );
    }

    fn refunded(&self) -> Vec<PaymentRefunded> {
        self.env
            .published()
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::PaymentRefunded(r)) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn refund_failed(&self) -> Vec<PaymentRefundFailed> {
        self.env
            .published()
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::PaymentRefundFailed(r)) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// `(idempotency_key, outcome, amount_cents, gateway_refund_id)` of the order's refund
    /// rows in the ledger.
    async fn ledger_refunds(&self, order_id: &str) -> Vec<(String, String, i64, Option<String>)> {
        sqlx::query_as(
            "SELECT idempotency_key, outcome, amount_cents, gateway_refund_id FROM payments.ledger
             WHERE order_id = $1 AND kind = 'refund' ORDER BY recorded_at",
        )
        .bind(order_id)
        .fetch_all(&self.env.ctx.pool)
        .await
        .expect("ledger")
    }

    /// The simulated gateway's refunds of the order.
    async fn gateway_refunds(&self, order_id: &str) -> Vec<payment::GatewayCall> {
        gateway_calls(self)
            .await
            .into_iter()
            .filter(|c| c.kind == "refund" && c.order_id == order_id)
            .collect()
    }

    async fn row(&self, order_id: &str) -> Option<PaymentRow> {
        payment::payments(&self.env.ctx.pool)
            .await
            .expect("payments")
            .into_iter()
            .find(|p| p.order_id == order_id)
    }

    async fn stored(&self, order_id: &str) -> (Option<String>, Option<String>, Option<String>) {
        sqlx::query_as(
            "SELECT token_ref, last4, decline_code FROM payments.payments WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_one(&self.env.ctx.pool)
        .await
        .expect("row")
    }

    fn processed(&self) -> Vec<PaymentProcessed> {
        self.env
            .published()
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::PaymentProcessed(p)) => Some(p),
                _ => None,
            })
            .collect()
    }
}

fn created(order_id: &str, token: &str, total: i64) -> Envelope {
    Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: order_id.into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            items: vec![OrderLine {
                product_id: "sku-1".into(),
                quantity: 1,
                unit_price_cents: total,
            }],
            total_cents: total,
            currency: "EUR".into(),
            payment_token_sealed: shared::payment_token::TokenKeys::development()
                .seal(order_id, token),
            payment_ref: shared::payment_token::reference(token),
            ..Default::default()
        }),
        None,
    )
}

fn confirmed(order_id: &str, total: i64) -> Envelope {
    Envelope::new(
        Payload::OrderConfirmed(OrderConfirmed {
            order_id: order_id.into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            total_cents: total,
            currency: "EUR".into(),
        }),
        None,
    )
}

fn cancelled(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderCancelled(OrderCancelled {
            order_id: order_id.into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            reason: CancelReason::OutOfStock as i32,
        }),
        None,
    )
}

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
async fn a_cancel_after_capture_refunds_in_full_with_one_gateway_call_even_when_delivered_twice() {
    let h = Harness::new().await;
    h.captured("o1", 2500).await;
    let cancel = customer_cancelled("o1");
    let first = h.settle(std::slice::from_ref(&cancel)).await;
    assert!(first.parked.is_empty(), "nothing parked: {first:?}");
    let again = h.settle(std::slice::from_ref(&cancel)).await;
    assert_eq!(again.duplicates, 1);
    // The same cancel re-published under a new event id finds nothing left to give back.
    let later = h.settle(&[customer_cancelled("o1")]).await;
    assert!(later.parked.is_empty(), "{later:?}");

    let refunded = h.refunded();
    assert_eq!(refunded.len(), 1, "{refunded:?}");
    let r = &refunded[0];
    assert_eq!(
        (
            r.order_id.as_str(),
            r.refund_id.as_str(),
            r.amount_cents,
            r.currency.as_str(),
            r.user_id.as_str(),
            r.customer_email.as_str()
        ),
        (
            "o1",
            cancel.event_id.as_str(),
            2500,
            "EUR",
            "u1",
            "a@example.com"
        )
    );
    assert!(r.gateway_refund_id.starts_with("re_"), "{r:?}");
    assert_eq!(
        h.ledger_refunds("o1").await,
        vec![(
            format!("refund:{}", cancel.event_id),
            "succeeded".into(),
            2500,
            Some(r.gateway_refund_id.clone())
        )]
    );
    let calls = h.gateway_refunds("o1").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!((calls[0].calls, calls[0].amount_cents), (1, 2500));
    assert!(h.env.parked().is_empty(), "no dead letter");
}

#[tokio::test]
async fn a_customers_cancel_that_overtakes_the_confirmation_voids_and_the_late_confirm_takes_nothing()
 {
    let h = Harness::new().await;
    h.process(&[created("o1", "tok_visa", 900)]).await;
    let report = h
        .settle(&[customer_cancelled("o1"), confirmed("o1", 900)])
        .await;
    assert!(report.parked.is_empty(), "{report:?}");
    assert_eq!(h.row("o1").await.expect("row").status, "voided");
    let calls: Vec<String> = gateway_calls(&h)
        .await
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(calls, vec!["authorize", "void"], "no capture, no refund");
}

#[tokio::test]
async fn a_cancel_after_a_partial_refund_gives_back_only_what_is_left() {
    let h = Harness::new().await;
    h.captured("o1", 1000).await;
    h.refund(&[refund_requested("o1", "r-1", 300)]).await;
    h.settle(&[customer_cancelled("o1")]).await;
    let amounts: Vec<i64> = h.refunded().iter().map(|r| r.amount_cents).collect();
    assert_eq!(amounts, vec![300, 700]);
}

fn refund_requested(order_id: &str, refund_id: &str, amount: i64) -> Envelope {
    Envelope::new(
        Payload::RefundRequested(RefundRequested {
            order_id: order_id.into(),
            refund_id: refund_id.into(),
            amount_cents: amount,
            currency: "EUR".into(),
            items: vec![],
            restock: false,
            reason: "damaged in transit".into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
        }),
        None,
    )
}

fn customer_cancelled(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderCancelled(OrderCancelled {
            order_id: order_id.into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            reason: CancelReason::CustomerCancelled as i32,
        }),
        None,
    )
}

#[tokio::test]
async fn a_refund_requested_delivered_twice_makes_one_gateway_call_one_ledger_row_one_payment_refunded()
 {
    let h = Harness::new().await;
    h.captured("o1", 2000).await;
    let request = refund_requested("o1", "r-1", 500);
    let first = h.refund(std::slice::from_ref(&request)).await;
    assert_eq!(first.processed, 1, "{first:?}");
    let again = h.refund(std::slice::from_ref(&request)).await;
    assert_eq!(again.duplicates, 1);
    // The same refund re-published under a new event id is the same refund.
    let republished = h.refund(&[refund_requested("o1", "r-1", 500)]).await;
    assert_eq!(republished.processed, 1);

    let refunded = h.refunded();
    assert_eq!(refunded.len(), 1, "{refunded:?}");
    assert_eq!(
        (refunded[0].refund_id.as_str(), refunded[0].amount_cents),
        ("r-1", 500)
    );
    let ledger = h.ledger_refunds("o1").await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].0, "refund:r-1");
    let calls = h.gateway_refunds("o1").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].calls, 1, "the gateway was asked once");
    assert_eq!(calls[0].refund_id.as_deref(), ledger[0].3.as_deref());
    assert!(h.refund_failed().is_empty());
}

#[tokio::test]
async fn a_refund_above_what_was_captured_fails_without_asking_the_gateway() {
    let h = Harness::new().await;
    h.captured("o1", 1000).await;
    h.refund(&[refund_requested("o1", "r-big", 1001)]).await;
    let failed = h.refund_failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (
            failed[0].refund_id.as_str(),
            failed[0].amount_cents,
            failed[0].reason.as_str()
        ),
        ("r-big", 1001, "exceeds_captured")
    );
    assert!(h.refunded().is_empty());
    assert!(h.gateway_refunds("o1").await.is_empty(), "no gateway call");
    assert!(h.ledger_refunds("o1").await.is_empty(), "no ledger row");
}

#[tokio::test]
async fn two_partial_refunds_summing_to_the_capture_pass_and_a_third_fails() {
    let h = Harness::new().await;
    h.captured("o1", 1000).await;
    h.refund(&[
        refund_requested("o1", "r-1", 600),
        refund_requested("o1", "r-2", 400),
        refund_requested("o1", "r-3", 1),
    ])
    .await;
    let refunded: Vec<(String, i64)> = h
        .refunded()
        .into_iter()
        .map(|r| (r.refund_id, r.amount_cents))
        .collect();
    assert_eq!(refunded, vec![("r-1".into(), 600), ("r-2".into(), 400)]);
    let failed = h.refund_failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].refund_id.as_str(), failed[0].reason.as_str()),
        ("r-3", "exceeds_captured")
    );
    assert_eq!(h.gateway_refunds("o1").await.len(), 2);
    // A cancel now has nothing left to refund.
    h.settle(&[customer_cancelled("o1")]).await;
    assert_eq!(h.refunded().len(), 2);
}

#[tokio::test]
async fn a_refund_before_the_capture_is_retried_not_failed() {
    let h = Harness::new().await;
    h.process(&[created("o1", "tok_visa", 1000)]).await;
    let request = refund_requested("o1", "r-early", 1000);
    let ev = h.env.rmq_event(
        "payment-refund",
        std::slice::from_ref(&request),
        Encoding::Protobuf,
    );
    let json = serde_json::to_value(&ev).expect("event json");
    let err = h
        .refund
        .invoke(json.clone())
        .await
        .expect_err("not captured yet: the batch comes back");
    assert!(err.to_string().contains("not captured yet"), "{err}");
    assert!(h.refund_failed().is_empty(), "not failed");
    assert!(h.env.parked().is_empty(), "not parked");
    assert!(h.gateway_refunds("o1").await.is_empty());

    h.settle(&[confirmed("o1", 1000)]).await;
    h.refund.invoke(json).await.expect("after the capture");
    let refunded = h.refunded();
    assert_eq!(refunded.len(), 1);
    assert_eq!(refunded[0].refund_id, "r-early");
}

#[tokio::test]
async fn a_refund_of_an_order_that_never_took_money_fails_and_an_invalid_one_is_parked() {
    let h = Harness::new().await;
    h.process(&[created("o1", "tok_chargeDeclined", 1000)])
        .await;
    h.refund(&[refund_requested("o1", "r-1", 10)]).await;
    let failed = h.refund_failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason, "exceeds_captured");
    let report = h
        .refund(&[
            refund_requested("o1", "r-zero", 0),
            refund_requested("o1", "", 10),
        ])
        .await;
    assert_eq!(report.parked.len(), 2, "{report:?}");
    assert!(report.parked[0].reason.contains("positive amount"));
    assert!(report.parked[1].reason.contains("refund_id"));
}

/// The simulated gateway, declining every refund with a provider's code.
struct DeclinesRefunds(payment::gateway::SimulatedGateway);

#[async_trait::async_trait]
impl payment::gateway::PaymentGateway for DeclinesRefunds {
    async fn authorize(
        &self,
        req: payment::gateway::AuthorizeRequest<'_>,
    ) -> Result<payment::gateway::Authorization, payment::gateway::AuthorizeError> {
        self.0.authorize(req).await
    }
    async fn capture(&self, req: payment::gateway::SettleRequest<'_>) -> anyhow::Result<()> {
        self.0.capture(req).await
    }
    async fn void(&self, req: payment::gateway::SettleRequest<'_>) -> anyhow::Result<()> {
        self.0.void(req).await
    }
    async fn refund(
        &self,
        _: payment::gateway::SettleRequest<'_>,
    ) -> Result<payment::gateway::Refund, payment::gateway::RefundError> {
        Err(payment::gateway::RefundError::Declined(
            payment::gateway::Decline {
                code: "charge_disputed".into(),
            },
        ))
    }
}

#[tokio::test]
async fn a_refund_the_gateway_declines_fails_with_its_code_and_is_in_the_ledger() {
    let h = Harness::new().await;
    h.captured("o1", 1000).await;
    let gateway = DeclinesRefunds(
        payment::gateway::SimulatedGateway::new(&h.env.ctx.config.database_url).expect("gateway"),
    );
    let refund = payment::functions::refund_with(&h.env.ctx, Arc::new(gateway));
    h.deliver(
        &refund,
        "payment-refund",
        &[refund_requested("o1", "r-1", 100)],
    )
    .await;
    let failed = h.refund_failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason, "charge_disputed");
    assert!(h.refunded().is_empty());
    let ledger = h.ledger_refunds("o1").await;
    assert_eq!(
        ledger,
        vec![("refund:r-1".into(), "declined".into(), 100, None)]
    );
    // Nothing was given back: a full refund is still possible.
    h.refund(&[refund_requested("o1", "r-2", 1000)]).await;
    assert_eq!(h.refunded().len(), 1);
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

async fn gateway_calls(h: &Harness) -> Vec<payment::GatewayCall> {
    let mut conn = h.env.ctx.pool.acquire().await.expect("conn");
    payment::gateway::SimulatedGateway::calls(&mut conn)
        .await
        .expect("calls")
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

#[tokio::test]
async fn the_simulator_refuses_to_refund_more_than_it_captured_and_answers_a_repeated_key_once() {
    let h = Harness::new().await;
    let gateway =
        payment::gateway::SimulatedGateway::new(&h.env.ctx.config.database_url).expect("gateway");
    let payment_id = uuid::Uuid::now_v7();
    let request = |key, amount_cents| payment::gateway::SettleRequest {
        idempotency_key: key,
        order_id: "o-ref",
        payment_id,
        provider_ref: "unused by the simulator",
        amount_cents,
        currency: "EUR",
    };
    use payment::gateway::{PaymentGateway as _, RefundError};
    let declined = |r: Result<payment::gateway::Refund, RefundError>| match r {
        Err(RefundError::Declined(d)) => d.code,
        other => panic!("expected a decline, got {other:?}"),
    };
    assert_eq!(
        declined(gateway.refund(request("refund:ev-0", 1)).await),
        "amount_too_large",
        "nothing captured yet"
    );
    gateway
        .capture(request("capture:ev-c", 500))
        .await
        .expect("capture");
    let first = gateway
        .refund(request("refund:ev-1", 300))
        .await
        .expect("refund");
    let again = gateway
        .refund(request("refund:ev-1", 300))
        .await
        .expect("the same refund again");
    assert_eq!(first, again, "a repeated key gets the first answer");
    assert_eq!(
        declined(gateway.refund(request("refund:ev-2", 201)).await),
        "amount_too_large",
        "only 200 left"
    );
    gateway
        .refund(request("refund:ev-3", 200))
        .await
        .expect("the rest");
    let calls: Vec<(String, String, i64, i64)> = gateway_calls(&h)
        .await
        .into_iter()
        .filter(|c| c.kind == "refund")
        .map(|c| (c.idempotency_key, c.outcome, c.amount_cents, c.calls))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("refund:ev-0".into(), "declined".into(), 1, 1),
            ("refund:ev-1".into(), "succeeded".into(), 300, 2),
            ("refund:ev-2".into(), "declined".into(), 201, 1),
            ("refund:ev-3".into(), "succeeded".into(), 200, 1),
        ]
    );
}

#[tokio::test]
async fn two_refunds_racing_for_the_last_of_a_capture_give_back_no_more_than_was_captured() {
    let h = Harness::new().await;
    h.captured("o1", 1000).await;
    let (a, b) = (
        refund_requested("o1", "r-a", 600),
        refund_requested("o1", "r-b", 600),
    );
    // Two invocations at once, as two execution environments would run them.
    let (ra, rb) = tokio::join!(
        h.refund(std::slice::from_ref(&a)),
        h.refund(std::slice::from_ref(&b))
    );
    assert_eq!((ra.processed, rb.processed), (1, 1), "{ra:?} {rb:?}");
    let refunded = h.refunded();
    let failed = h.refund_failed();
    assert_eq!(
        (refunded.len(), failed.len()),
        (1, 1),
        "{refunded:?} {failed:?}"
    );
    assert_eq!(failed[0].reason, "exceeds_captured");
    let calls = h.gateway_refunds("o1").await;
    assert_eq!(
        calls.len(),
        1,
        "the loser never reached the gateway: {calls:?}"
    );
    let total: i64 = h
        .ledger_refunds("o1")
        .await
        .iter()
        .map(|(_, _, amount, _)| amount)
        .sum();
    assert_eq!(total, 600);
}
