//! Running the pure saga against a locked order, shared by `order-saga` and `order-expire`:
//! step, persist what changed, and build the event for the decision (to go to the outbox
//! in the same transaction).

use crate::domain::saga::{Decision, Input, step};
use crate::pg::orders::{self, LockedOrder};
use shared::Envelope;
use shared::contracts::{OrderCancelled, OrderConfirmed, Payload};
use sqlx::PgConnection;

/// Applies `input` to `order` (locked in `conn`'s transaction). Returns the decision's event,
/// if this input settled the order. Inputs the saga ignores write nothing.
pub async fn apply_input(
    conn: &mut PgConnection,
    order: &LockedOrder,
    input: Input,
    cause: Option<&Envelope>,
) -> sqlx::Result<Option<Envelope>> {
    let (next, decision) = step(order.state, input);
    if next != order.state {
        orders::save_state(conn, order.order_id, &next).await?;
    }
    Ok(decision.map(|d| decision_event(order, d, cause)))
}

/// `order.confirmed` or `order.cancelled(reason)`, carrying what downstream services need
/// (payment captures the total, notification writes to the customer).
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
    Envelope::new(payload, cause)
}
