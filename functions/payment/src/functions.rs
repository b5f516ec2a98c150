//! The payment Lambda functions: `payment-process` (order.created) and `payment-settle`
//! (order.confirmed, order.cancelled), as batch-runner message handlers.

use crate::domain::{self, CancelAction, ConfirmAction, PaymentStatus, ProcessAction};
use crate::gateway::{PaymentGateway, SimulatedGateway};
use crate::pg::PgPayments;
use async_trait::async_trait;
use shared::contracts::{
    OrderCancelled, OrderConfirmed, OrderCreated, Payload, PaymentCaptured, PaymentProcessed,
    PaymentVoided,
};
use shared::lambda::RmqFunction;
use shared::runner::{Applied, MessageHandler};
use shared::{Envelope, Function, HandleError};
use sqlx::PgConnection;
use std::sync::Arc;

pub const PROCESS: &str = "payment-process";
pub const SETTLE: &str = "payment-settle";

/// `payment-process` with the simulated gateway.
pub fn process(ctx: &shared::context::Context) -> Arc<dyn Function> {
    process_with(ctx, Arc::new(SimulatedGateway))
}

pub fn process_with(
    ctx: &shared::context::Context,
    gateway: Arc<dyn PaymentGateway>,
) -> Arc<dyn Function> {
    Arc::new(RmqFunction(ctx.batch_runner(Process { gateway })))
}

/// `payment-settle` with the simulated gateway.
pub fn settle(ctx: &shared::context::Context) -> Arc<dyn Function> {
    settle_with(ctx, Arc::new(SimulatedGateway))
}

pub fn settle_with(
    ctx: &shared::context::Context,
    gateway: Arc<dyn PaymentGateway>,
) -> Arc<dyn Function> {
    Arc::new(RmqFunction(ctx.batch_runner(Settle { gateway })))
}

/// Authorizes the order's total when the order is created.
pub struct Process {
    pub gateway: Arc<dyn PaymentGateway>,
}

#[async_trait]
impl MessageHandler for Process {
    type Effect = ();

    fn name(&self) -> &'static str {
        PROCESS
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<()>, HandleError> {
        let Payload::OrderCreated(order) = env.payload() else {
            return Err(HandleError::unexpected(env));
        };
        domain::validate_charge(
            &order.order_id,
            &order.payment_token,
            order.total_cents,
            &order.currency,
        )
        .map_err(HandleError::Permanent)?;
        let row = PgPayments::lock_or_create(tx, &order.order_id).await?;
        match domain::on_order_created(row.status) {
            ProcessAction::Nothing => {
                tracing::info!(status = %row.status, "payment already decided or order cancelled; nothing to do");
                Ok(Applied::nothing())
            }
            ProcessAction::Authorize => self.authorize(tx, env, order).await,
        }
    }
}

impl Process {
    async fn authorize(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
        order: &OrderCreated,
    ) -> Result<Applied<()>, HandleError> {
        let (amount, currency, token) = (
            order.total_cents,
            order.currency.as_str(),
            order.payment_token.as_str(),
        );
        let processed = match self.gateway.authorize(token, amount, currency).await {
            Ok(auth) => {
                PgPayments::record_authorization(
                    tx,
                    &order.order_id,
                    PaymentStatus::Authorized,
                    Some(auth.payment_id),
                    amount,
                    currency,
                    token,
                    Some(&auth.last4),
                    None,
                )
                .await?;
                tracing::info!(payment_id = %auth.payment_id, "payment authorized");
                PaymentProcessed {
                    order_id: order.order_id.clone(),
                    status: shared::contracts::PaymentStatus::Success as i32,
                    payment_id: auth.payment_id.to_string(),
                    amount_cents: amount,
                    currency: currency.to_string(),
                    decline_code: String::new(),
                    last4: auth.last4,
                }
            }
            Err(decline) => {
                PgPayments::record_authorization(
                    tx,
                    &order.order_id,
                    PaymentStatus::Declined,
                    None,
                    amount,
                    currency,
                    token,
                    None,
                    Some(&decline.code),
                )
                .await?;
                tracing::info!(decline_code = %decline.code, "payment declined");
                PaymentProcessed {
                    order_id: order.order_id.clone(),
                    status: shared::contracts::PaymentStatus::Failed as i32,
                    payment_id: String::new(),
                    amount_cents: amount,
                    currency: currency.to_string(),
                    decline_code: decline.code,
                    last4: String::new(),
                }
            }
        };
        Ok(Applied::events(vec![Envelope::new(
            Payload::PaymentProcessed(processed),
            Some(env),
        )]))
    }
}

/// Captures on confirmation, voids (or leaves a tombstone) on cancellation.
pub struct Settle {
    pub gateway: Arc<dyn PaymentGateway>,
}

#[async_trait]
impl MessageHandler for Settle {
    type Effect = ();

    fn name(&self) -> &'static str {
        SETTLE
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<()>, HandleError> {
        match env.payload() {
            Payload::OrderConfirmed(e) => self.confirmed(tx, env, e).await,
            Payload::OrderCancelled(e) => self.cancelled(tx, env, e).await,
            _ => Err(HandleError::unexpected(env)),
        }
    }
}

impl Settle {
    async fn confirmed(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
        e: &OrderConfirmed,
    ) -> Result<Applied<()>, HandleError> {
        if e.order_id.trim().is_empty() {
            return Err(HandleError::permanent(
                "order.confirmed without an order_id",
            ));
        }
        let row = PgPayments::lock_or_create(tx, &e.order_id).await?;
        match domain::on_order_confirmed(row.status).map_err(HandleError::Permanent)? {
            ConfirmAction::Nothing => Ok(Applied::nothing()),
            ConfirmAction::Capture => {
                let payment_id = row.payment_id.ok_or_else(|| {
                    HandleError::permanent("authorized payment has no payment_id")
                })?;
                self.gateway
                    .capture(payment_id, row.amount_cents, &row.currency)
                    .await?;
                PgPayments::set_status(tx, &e.order_id, PaymentStatus::Captured).await?;
                tracing::info!(%payment_id, amount_cents = row.amount_cents, "payment captured");
                let captured = PaymentCaptured {
                    order_id: e.order_id.clone(),
                    payment_id: payment_id.to_string(),
                    amount_cents: row.amount_cents,
                    currency: row.currency,
                };
                Ok(Applied::events(vec![Envelope::new(
                    Payload::PaymentCaptured(captured),
                    Some(env),
                )]))
            }
        }
    }

    async fn cancelled(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
        e: &OrderCancelled,
    ) -> Result<Applied<()>, HandleError> {
        if e.order_id.trim().is_empty() {
            return Err(HandleError::permanent(
                "order.cancelled without an order_id",
            ));
        }
        let row = PgPayments::lock_or_create(tx, &e.order_id).await?;
        let voided = |payment_id: String| {
            let payload = Payload::PaymentVoided(PaymentVoided {
                order_id: e.order_id.clone(),
                payment_id,
            });
            Applied::events(vec![Envelope::new(payload, Some(env))])
        };
        match domain::on_order_cancelled(row.status).map_err(HandleError::Permanent)? {
            CancelAction::Nothing => Ok(Applied::nothing()),
            CancelAction::Tombstone => {
                PgPayments::set_status(tx, &e.order_id, PaymentStatus::Cancelled).await?;
                tracing::info!("order cancelled before its payment was processed; tombstone left");
                Ok(voided(String::new()))
            }
            CancelAction::Void => {
                let payment_id = row.payment_id.ok_or_else(|| {
                    HandleError::permanent("authorized payment has no payment_id")
                })?;
                self.gateway.void(payment_id).await?;
                PgPayments::set_status(tx, &e.order_id, PaymentStatus::Voided).await?;
                tracing::info!(%payment_id, "authorization voided");
                Ok(voided(payment_id.to_string()))
            }
        }
    }
}

/// `payment-relay` (schedule): re-sends outbox rows a crash or a broker outage left behind.
pub fn relay(ctx: &shared::context::Context) -> Arc<dyn Function> {
    shared::lambda::outbox_relay(ctx, crate::SCHEMA)
}
