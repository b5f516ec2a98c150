//! The payment functions' test harness: the functions on the real local Postgres with a
//! recording publisher, and the events they are fed.

#![allow(dead_code)]

use payment::PaymentRow;
use shared::contracts::*;
use shared::runner::BatchReport;
use shared::testing::TestEnv;
use shared::{Encoding, Envelope, Function};
use std::sync::Arc;

pub struct Harness {
    pub env: TestEnv,
    pub process: Arc<dyn Function>,
    pub settle: Arc<dyn Function>,
    pub refund: Arc<dyn Function>,
}

impl Harness {
    pub async fn new() -> Self {
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

    pub async fn deliver(
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

    pub async fn process(&self, events: &[Envelope]) -> BatchReport {
        self.deliver(&self.process, "payment-process", events).await
    }

    pub async fn settle(&self, events: &[Envelope]) -> BatchReport {
        self.deliver(&self.settle, "payment-settle", events).await
    }

    pub async fn refund(&self, events: &[Envelope]) -> BatchReport {
        self.deliver(&self.refund, "payment-refund", events).await
    }

    /// An order authorized and captured for `total`.
    pub async fn captured(&self, order_id: &str, total: i64) {
        self.process(&[created(order_id, "tok_visa", total)]).await;
        self.settle(&[confirmed(order_id, total)]).await;
        assert_eq!(
            self.row(order_id).await.expect("row").status,
            "captured",
            "{order_id}"
        );
    }

    pub fn refunded(&self) -> Vec<PaymentRefunded> {
        self.env
            .published()
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::PaymentRefunded(r)) => Some(r),
                _ => None,
            })
            .collect()
    }

    pub fn refund_failed(&self) -> Vec<PaymentRefundFailed> {
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
    pub async fn ledger_refunds(
        &self,
        order_id: &str,
    ) -> Vec<(String, String, i64, Option<String>)> {
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
    pub async fn gateway_refunds(&self, order_id: &str) -> Vec<payment::GatewayCall> {
        gateway_calls(self)
            .await
            .into_iter()
            .filter(|c| c.kind == "refund" && c.order_id == order_id)
            .collect()
    }

    pub async fn row(&self, order_id: &str) -> Option<PaymentRow> {
        payment::payments(&self.env.ctx.pool)
            .await
            .expect("payments")
            .into_iter()
            .find(|p| p.order_id == order_id)
    }

    pub async fn stored(&self, order_id: &str) -> (Option<String>, Option<String>, Option<String>) {
        sqlx::query_as(
            "SELECT token_ref, last4, decline_code FROM payments.payments WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_one(&self.env.ctx.pool)
        .await
        .expect("row")
    }

    pub fn processed(&self) -> Vec<PaymentProcessed> {
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

pub fn created(order_id: &str, token: &str, total: i64) -> Envelope {
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

pub fn confirmed(order_id: &str, total: i64) -> Envelope {
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

pub fn cancelled(order_id: &str) -> Envelope {
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

pub async fn gateway_calls(h: &Harness) -> Vec<payment::GatewayCall> {
    let mut conn = h.env.ctx.pool.acquire().await.expect("conn");
    payment::gateway::SimulatedGateway::calls(&mut conn)
        .await
        .expect("calls")
}

pub fn refund_requested(order_id: &str, refund_id: &str, amount: i64) -> Envelope {
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

pub fn customer_cancelled(order_id: &str) -> Envelope {
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
