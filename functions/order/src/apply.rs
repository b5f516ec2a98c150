//! Running the pure saga against a locked order, shared by `order-saga` and `order-expire`:
//! step, persist what changed, and build the event for the decision (to go to the outbox
//! in the same transaction).

use crate::domain::saga::{Decision, Input, step};
use crate::pg::orders::{self, LockedOrder};
use shared::Envelope;
use shared::contracts::{OrderCancelled, OrderConfirmed, Payload};
use sqlx::PgConnection;

/// A decision the saga just took: its event, and how long the order waited for it.
#[derive(Debug, Clone)]
pub struct Decided {
    pub event: Envelope,
    pub timing: SagaTiming,
}

/// How long an order waited for its decision, and which decision it was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SagaTiming {
    /// `confirmed`, or the cancel reason (`out_of_stock`, `payment_declined`, `expired`).
    pub outcome: &'static str,
    /// From the order's creation to the decision.
    pub seconds: f64,
}

impl SagaTiming {
    /// Records the saga duration; call once the decision is committed, so a transaction
    /// that rolls back (and is retried) is not counted twice.
    pub fn observe(self) {
        shared::metrics::SAGA_DURATION.observe(&[self.outcome], self.seconds);
    }
}

/// Applies `input` to `order` (locked in `conn`'s transaction). Returns the decision, if
/// this input settled the order. Inputs the saga ignores write nothing.
pub async fn apply_input(
    conn: &mut PgConnection,
    order: &LockedOrder,
    input: Input,
    cause: Option<&Envelope>,
) -> sqlx::Result<Option<Decided>> {
    let (next, decision) = step(order.state, input);
    if next != order.state {
        orders::save_state(conn, order.order_id, &next).await?;
    }
    Ok(decision.map(|d| decided(order, d, cause)))
}

/// The decision of `decision` for `order`, with its timing.
pub fn decided(order: &LockedOrder, decision: Decision, cause: Option<&Envelope>) -> Decided {
    let waited = chrono::Utc::now() - order.created_at;
    Decided {
        event: decision_event(order, decision, cause),
        timing: SagaTiming {
            outcome: match decision {
                Decision::Confirm => "confirmed",
                Decision::Cancel(reason) => reason.as_str(),
            },
            seconds: waited.num_milliseconds().max(0) as f64 / 1000.0,
        },
    }
}

/// `order.confirmed` or `order.cancelled(reason)`, carrying what downstream services need
/// (payment captures the total, notification writes to the customer). Without a causing
/// event (expiry) it continues the order's own trace.
pub fn decision_event(
    order: &LockedOrder,
    decision: Decision,
    cause: Option<&Envelope>,
) -> Envelope {
    let payload = match decision {
        Decision::Confirm => Payload::OrderConfirmed(OrderConfirmed {
            order_id: order.order_id.to_string(),
            user_id: order.user_id.to_string(),
            customer_email: order.customer_email.clone(),
            total_cents: order.total_cents,
            currency: order.currency.clone(),
        }),
        Decision::Cancel(reason) => Payload::OrderCancelled(OrderCancelled {
            order_id: order.order_id.to_string(),
            user_id: order.user_id.to_string(),
            customer_email: order.customer_email.clone(),
            reason: reason.to_proto() as i32,
        }),
    };
    let mut event = Envelope::new(payload, cause);
    if cause.is_none() && shared::telemetry::parse_traceparent(&order.traceparent).is_some() {
        event.traceparent = shared::telemetry::child_traceparent(&order.traceparent);
    }
    event
}
