//! Refunds: a cancel after capture and an admin's refund.requested, paid back once per
//! refund id within what was captured, against the real local Postgres and the simulated
//! gateway.

mod common;

use common::*;
use shared::Encoding;
use std::sync::Arc;

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
