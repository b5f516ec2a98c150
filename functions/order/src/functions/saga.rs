//! `order-saga` (queue order-saga <- stock.reserved, stock.rejected, payment.processed):
//! feeds each result to the pure saga under a row lock and publishes its decision.

use crate::apply::{SagaTiming, apply_input};
use crate::domain::saga::Input;
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

    async fn after_commit(&self, decided: Vec<SagaTiming>) {
        decided.into_iter().for_each(SagaTiming::observe);
    }
}
