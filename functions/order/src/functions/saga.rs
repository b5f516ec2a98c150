//! `order-saga` (queue order-saga <- stock.reserved, stock.rejected, payment.processed,
//! payment.refunded, payment.refund_failed): feeds each result to the pure saga under a row
//! lock and publishes its decision; records each refund's outcome in `orders.refunds`.

use crate::apply::{SagaTiming, apply_input};
use crate::domain::saga::Input;
use crate::pg::lifecycle::{self, Outcome, ReportedRefund};
use crate::pg::orders::{self, LoadError};
use async_trait::async_trait;
use shared::contracts::{Payload, PaymentStatus};
use shared::runner::{Applied, MessageHandler};
use shared::{Envelope, Function, HandleError};
use sqlx::PgConnection;
use std::sync::Arc;

pub struct SagaHandler;

pub fn saga(ctx: &shared::context::Context) -> Arc<dyn Function> {
    Arc::new(shared::lambda::RmqFunction(ctx.batch_runner(SagaHandler)))
}

/// A refund outcome, if `env` is one.
fn reported_refund(env: &Envelope) -> Option<Result<ReportedRefund<'_>, HandleError>> {
    let (order_id, refund_id, amount_cents, currency, outcome) = match env.payload() {
        Payload::PaymentRefunded(e) => (
            &e.order_id,
            &e.refund_id,
            e.amount_cents,
            &e.currency,
            Outcome::Refunded,
        ),
        Payload::PaymentRefundFailed(e) => (
            &e.order_id,
            &e.refund_id,
            e.amount_cents,
            &e.currency,
            Outcome::Failed(e.reason.clone()),
        ),
        _ => return None,
    };
    let parse = |what: &str, id: &str| {
        uuid::Uuid::parse_str(id)
            .map_err(|_| HandleError::permanent(format!("invalid {what} {id:?}")))
    };
    let ids = parse("refund id", refund_id).and_then(|r| Ok((r, parse("order id", order_id)?)));
    Some(ids.map(|(refund_id, order_id)| ReportedRefund {
        refund_id,
        order_id,
        amount_cents,
        currency,
        outcome,
    }))
}

/// Records a refund's outcome (idempotent: the first outcome of a refund wins).
async fn record_refund(tx: &mut PgConnection, r: &ReportedRefund<'_>) -> Result<(), HandleError> {
    if !lifecycle::order_exists(tx, r.order_id).await? {
        return Err(HandleError::permanent("unknown order"));
    }
    let changed = lifecycle::record_outcome(tx, r).await?;
    tracing::info!(refund_id = %r.refund_id, outcome = ?r.outcome, changed, "refund outcome");
    Ok(())
}

/// The order an event is about and the saga input it means.
fn input_of(env: &Envelope) -> Result<(&str, Input), HandleError> {
    match env.payload() {
        Payload::StockReserved(e) => Ok((&e.order_id, Input::StockReserved)),
        Payload::StockRejected(e) => Ok((&e.order_id, Input::StockRejected)),
        Payload::PaymentProcessed(e) => match PaymentStatus::try_from(e.status) {
            Ok(PaymentStatus::Success) => Ok((&e.order_id, Input::PaymentSucceeded)),
            Ok(PaymentStatus::Failed) => Ok((&e.order_id, Input::PaymentFailed)),
            _ => Err(HandleError::permanent(format!(
                "payment.processed with an invalid status {}",
                e.status
            ))),
        },
        _ => Err(HandleError::unexpected(env)),
    }
}

#[async_trait]
impl MessageHandler for SagaHandler {
    /// The decision's timing, observed once committed.
    type Effect = SagaTiming;

    fn name(&self) -> &'static str {
        "order-saga"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<SagaTiming>, HandleError> {
        if let Some(refund) = reported_refund(env) {
            record_refund(tx, &refund?).await?;
            return Ok(Applied::nothing());
        }
        let (order_id, input) = input_of(env)?;
        let order_id = uuid::Uuid::parse_str(order_id)
            .map_err(|_| HandleError::permanent(format!("invalid order id {order_id:?}")))?;
        let order = match orders::lock(tx, order_id).await {
            Ok(Some(order)) => order,
            Ok(None) => return Err(HandleError::permanent("unknown order")),
            Err(LoadError::Db(e)) => return Err(e.into()),
            // Retrying cannot fix our own bad row: park the message for an operator.
            Err(e @ LoadError::Corrupt(_)) => return Err(HandleError::permanent(e.to_string())),
        };
        let before = order.state;
        let decided = apply_input(tx, &order, input, Some(env)).await?;
        tracing::info!(
            ?input,
            from = %before.status,
            decision = decided.as_ref().map(|d| d.event.event_type.as_str()),
            "saga step"
        );
        Ok(match decided {
            Some(d) => Applied::events(vec![d.event]).with_effect(d.timing),
            None => Applied::nothing(),
        })
    }

    /// A whole chunk: every order locked in one statement, each result stepped through the
    /// pure saga in arrival order (several results of one order see each other's effect),
    /// every changed state written in one statement. A result for an unknown order or a
    /// malformed one fails the chunk, which the runner then applies message by message
    /// (parking that one).
    fn applies_in_bulk(&self) -> bool {
        true
    }

    async fn apply_chunk(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope],
    ) -> Result<Applied<SagaTiming>, HandleError> {
        let mut inputs = Vec::with_capacity(events.len());
        for env in events {
            // Refund outcomes are rare beside saga results: one statement each.
            if let Some(refund) = reported_refund(env) {
                record_refund(tx, &refund?).await?;
                continue;
            }
            let (order_id, input) = input_of(env)?;
            let order_id = uuid::Uuid::parse_str(order_id)
                .map_err(|_| HandleError::permanent(format!("invalid order id {order_id:?}")))?;
            inputs.push((*env, order_id, input));
        }
        let mut ids: Vec<uuid::Uuid> = inputs.iter().map(|(_, id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut locked: std::collections::HashMap<uuid::Uuid, orders::LockedOrder> =
            match orders::lock_many(tx, &ids).await {
                Ok(rows) => rows.into_iter().map(|o| (o.order_id, o)).collect(),
                Err(LoadError::Db(e)) => return Err(e.into()),
                Err(e @ LoadError::Corrupt(_)) => {
                    return Err(HandleError::permanent(e.to_string()));
                }
            };
        if locked.len() != ids.len() {
            return Err(HandleError::permanent("unknown order"));
        }
        let mut applied = Applied::nothing();
        let mut changed = std::collections::BTreeMap::new();
        for (env, order_id, input) in inputs {
            let Some(order) = locked.get_mut(&order_id) else {
                return Err(HandleError::permanent("unknown order"));
            };
            let (next, decision) = crate::domain::saga::step(order.state, input);
            if next != order.state {
                order.state = next;
                changed.insert(order_id, next);
            }
            if let Some(d) = decision {
                let decided = crate::apply::decided(order, d, Some(env));
                applied.events.push(decided.event);
                applied.effects.push(decided.timing);
            }
        }
        let states: Vec<_> = changed.into_iter().collect();
        orders::save_states(tx, &states).await?;
        tracing::info!(
            results = events.len(),
            decided = applied.events.len(),
            "chunk of saga results applied"
        );
        Ok(applied)
    }

    async fn after_commit(&self, decided: Vec<SagaTiming>) {
        decided.into_iter().for_each(SagaTiming::observe);
    }
}
