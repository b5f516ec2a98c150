//! The payment Lambda functions: `payment-process` (order.created), `payment-settle`
//! (order.confirmed, order.cancelled) and `payment-refund` (refund.requested), as
//! batch-runner message handlers.

use crate::domain::{self, CancelAction, ConfirmAction, PaymentStatus, ProcessAction};
use crate::gateway::{
    AuthorizeError, AuthorizeRequest, CallKind, PaymentGateway, SettleRequest, call_key,
};
use crate::pg::PgPayments;
use crate::pg::{AuthorizationRow, LedgerEntry};
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

mod refund;
pub use refund::{REFUND, Refund, refund, refund_with};
use refund::{Refunding, refund_at_gateway};

/// `payment-process` with the gateway the configuration chooses (`gateway::from_config`).
pub fn process(ctx: &shared::context::Context) -> Arc<dyn Function> {
    match crate::gateway::from_config(&ctx.config) {
        Ok(gateway) => process_with(ctx, gateway),
        Err(e) => shared::lambda::misconfigured(PROCESS, e),
    }
}

pub fn process_with(
    ctx: &shared::context::Context,
    gateway: Arc<dyn PaymentGateway>,
) -> Arc<dyn Function> {
    match shared::payment_token::TokenKeys::from_config(&ctx.config) {
        Ok(keys) => Arc::new(RmqFunction(ctx.batch_runner(Process { gateway, keys }))),
        Err(e) => shared::lambda::misconfigured(PROCESS, e),
    }
}

/// `payment-settle` with the gateway the configuration chooses (`gateway::from_config`).
pub fn settle(ctx: &shared::context::Context) -> Arc<dyn Function> {
    match crate::gateway::from_config(&ctx.config) {
        Ok(gateway) => settle_with(ctx, gateway),
        Err(e) => shared::lambda::misconfigured(SETTLE, e),
    }
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
    /// Opens the token sealed for this service by order-create.
    pub keys: shared::payment_token::TokenKeys,
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
        let token = domain::token_of(order, &self.keys).map_err(HandleError::Permanent)?;
        domain::validate_charge(&order.order_id, &token, order.total_cents, &order.currency)
            .map_err(HandleError::Permanent)?;
        let row = PgPayments::lock_or_create(tx, &order.order_id).await?;
        match domain::on_order_created(row.status) {
            ProcessAction::Nothing => {
                tracing::info!(status = %row.status, "payment already decided or order cancelled; nothing to do");
                Ok(Applied::nothing())
            }
            ProcessAction::Authorize => self.authorize(tx, env, order, &token).await,
        }
    }
    /// A whole chunk: every payment locked or created in one statement, the gateway asked
    /// for every authorization at once (each call with the key of its own event, so a retry
    /// repeats the same calls), then the ledger and the payments written in one statement
    /// each. A message that fails validation fails the chunk, which the runner then applies
    /// message by message (parking that one).
    fn applies_in_bulk(&self) -> bool {
        true
    }

    async fn apply_chunk(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope],
    ) -> Result<Applied<()>, HandleError> {
        let mut orders = Vec::with_capacity(events.len());
        for env in events {
            let Payload::OrderCreated(order) = env.payload() else {
                return Err(HandleError::unexpected(env));
            };
            let token = domain::token_of(order, &self.keys).map_err(HandleError::Permanent)?;
            domain::validate_charge(&order.order_id, &token, order.total_cents, &order.currency)
                .map_err(HandleError::Permanent)?;
            orders.push((*env, order, token));
        }
        let ids: Vec<&str> = orders.iter().map(|(_, o, _)| o.order_id.as_str()).collect();
        let status = PgPayments::lock_or_create_many(tx, &ids).await?;
        // The first event of each order still pending is authorized; any other is a no-op,
        // as it would be one message at a time.
        let mut seen = std::collections::HashSet::new();
        orders.retain(|(_, o, _)| {
            status.get(&o.order_id) == Some(&PaymentStatus::Pending)
                && seen.insert(o.order_id.as_str())
        });
        let keys: Vec<String> = orders
            .iter()
            .map(|(env, _, _)| call_key(CallKind::Authorize, &env.event_id))
            .collect();
        let answers =
            futures::future::join_all(orders.iter().zip(&keys).map(|((_, o, token), key)| {
                self.gateway.authorize(AuthorizeRequest {
                    idempotency_key: key,
                    order_id: &o.order_id,
                    token,
                    amount_cents: o.total_cents,
                    currency: &o.currency,
                })
            }))
            .await;
        let mut calls = Vec::with_capacity(orders.len());
        let mut decided = Vec::with_capacity(orders.len());
        let mut out = Vec::with_capacity(orders.len());
        for (((env, order, token), key), answer) in orders.iter().zip(&keys).zip(answers) {
            let (outcome, auth, decline_code) = match answer {
                Ok(auth) => ("approved", Some(auth), String::new()),
                Err(AuthorizeError::Declined(d)) => ("declined", None, d.code),
                Err(AuthorizeError::Unavailable(e)) => {
                    return Err(HandleError::Transient(e.context("payment gateway")));
                }
            };
            let payment_id = auth.as_ref().map(|a| a.payment_id);
            // The same lines as one message at a time, so logs read the same either way.
            match payment_id {
                Some(payment_id) => {
                    tracing::info!(order_id = %order.order_id, %payment_id, "payment authorized")
                }
                None => {
                    tracing::info!(order_id = %order.order_id, %decline_code, "payment declined")
                }
            }
            calls.push(LedgerEntry {
                idempotency_key: key,
                order_id: &order.order_id,
                kind: CallKind::Authorize,
                outcome,
                amount_cents: order.total_cents,
                currency: &order.currency,
                gateway_ref: payment_id,
                caused_by: &env.event_id,
                gateway_refund_id: None,
            });
            out.push(Envelope::new(
                Payload::PaymentProcessed(PaymentProcessed {
                    order_id: order.order_id.clone(),
                    status: if auth.is_some() {
                        shared::contracts::PaymentStatus::Success
                    } else {
                        shared::contracts::PaymentStatus::Failed
                    } as i32,
                    payment_id: payment_id.map(|p| p.to_string()).unwrap_or_default(),
                    amount_cents: order.total_cents,
                    currency: order.currency.clone(),
                    decline_code: decline_code.clone(),
                    last4: auth.as_ref().map(|a| a.last4.clone()).unwrap_or_default(),
                }),
                Some(env),
            ));
            // Only the reference is kept: capture, void and refund go by the gateway's id.
            decided.push((
                order,
                auth,
                shared::payment_token::reference(token),
                decline_code,
            ));
        }
        let rows: Vec<AuthorizationRow<'_>> = decided
            .iter()
            .map(|(order, auth, token_ref, code)| AuthorizationRow {
                order_id: &order.order_id,
                status: if auth.is_some() {
                    PaymentStatus::Authorized
                } else {
                    PaymentStatus::Declined
                },
                payment_id: auth.as_ref().map(|a| a.payment_id),
                provider_ref: auth.as_ref().map(|a| a.provider_ref.as_str()),
                amount_cents: order.total_cents,
                currency: &order.currency,
                token_ref,
                last4: auth.as_ref().map(|a| a.last4.as_str()),
                decline_code: Some(code.as_str()).filter(|c| !c.is_empty()),
            })
            .collect();
        PgPayments::record_authorizations(tx, &calls, &rows).await?;
        tracing::info!(
            orders = events.len(),
            authorized = rows.len(),
            "chunk of payments processed"
        );
        Ok(Applied::events(out))
    }
}

impl Process {
    async fn authorize(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
        order: &OrderCreated,
        token: &str,
    ) -> Result<Applied<()>, HandleError> {
        let (amount, currency) = (order.total_cents, order.currency.as_str());
        // Only the reference is kept: capture, void and refund go by the gateway's id.
        let token_ref = shared::payment_token::reference(token);
        let key = call_key(CallKind::Authorize, &env.event_id);
        let request = AuthorizeRequest {
            idempotency_key: &key,
            order_id: &order.order_id,
            token,
            amount_cents: amount,
            currency,
        };
        let answer = self.gateway.authorize(request).await;
        let entry = |outcome, gateway_ref| LedgerEntry {
            idempotency_key: &key,
            order_id: &order.order_id,
            kind: CallKind::Authorize,
            outcome,
            amount_cents: amount,
            currency,
            gateway_ref,
            caused_by: &env.event_id,
            gateway_refund_id: None,
        };
        let processed = match answer {
            Ok(auth) => {
                PgPayments::record_call(tx, entry("approved", Some(auth.payment_id))).await?;
                PgPayments::record_authorization(
                    tx,
                    &order.order_id,
                    PaymentStatus::Authorized,
                    Some(auth.payment_id),
                    Some(&auth.provider_ref),
                    amount,
                    currency,
                    &token_ref,
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
            Err(AuthorizeError::Unavailable(e)) => {
                return Err(HandleError::Transient(e.context("payment gateway")));
            }
            Err(AuthorizeError::Declined(decline)) => {
                PgPayments::record_call(tx, entry("declined", None)).await?;
                PgPayments::record_authorization(
                    tx,
                    &order.order_id,
                    PaymentStatus::Declined,
                    None,
                    None,
                    amount,
                    currency,
                    &token_ref,
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
    /// Captures or voids (`kind`) at the gateway with the key of the causing event, and
    /// writes the call to the ledger in the message's transaction.
    async fn call(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
        kind: CallKind,
        order_id: &str,
        payment_id: uuid::Uuid,
        row: &crate::pg::LockedPayment,
    ) -> Result<(), HandleError> {
        let key = call_key(kind, &env.event_id);
        let provider_ref = row
            .provider_ref
            .clone()
            .unwrap_or_else(|| payment_id.to_string());
        let request = SettleRequest {
            idempotency_key: &key,
            order_id,
            payment_id,
            provider_ref: &provider_ref,
            amount_cents: row.amount_cents,
            currency: &row.currency,
        };
        match kind {
            CallKind::Capture => self.gateway.capture(request).await,
            CallKind::Void => self.gateway.void(request).await,
            // An authorization needs the token, and a refund can be declined: each has its
            // own path (`Process::authorize`, `refund_at_gateway`).
            CallKind::Authorize | CallKind::Refund => {
                return Err(HandleError::permanent(format!(
                    "{} is not a settlement call",
                    kind.as_str()
                )));
            }
        }
        .map_err(|e| HandleError::Transient(e.context("payment gateway")))?;
        PgPayments::record_call(
            tx,
            LedgerEntry {
                idempotency_key: &key,
                order_id,
                kind,
                outcome: "succeeded",
                amount_cents: row.amount_cents,
                currency: &row.currency,
                gateway_ref: Some(payment_id),
                caused_by: &env.event_id,
                gateway_refund_id: None,
            },
        )
        .await?;
        Ok(())
    }

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
                self.call(tx, env, CallKind::Capture, &e.order_id, payment_id, &row)
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
        match domain::on_order_cancelled(row.status, row.amount_cents - row.refunded_cents) {
            CancelAction::Nothing => Ok(Applied::nothing()),
            CancelAction::Refund { amount_cents } => {
                // The refund's id is the cancel's event id: a redelivered cancel is the same
                // refund, and a later cancel event finds nothing left to give back.
                let refund = Refunding {
                    order_id: &e.order_id,
                    refund_id: &env.event_id,
                    amount_cents,
                    user_id: &e.user_id,
                    customer_email: &e.customer_email,
                };
                let event = refund_at_gateway(&*self.gateway, tx, env, &row, refund).await?;
                Ok(Applied::events(vec![Envelope::new(event, Some(env))]))
            }
            CancelAction::Tombstone => {
                PgPayments::set_status(tx, &e.order_id, PaymentStatus::Cancelled).await?;
                tracing::info!("order cancelled before its payment was processed; tombstone left");
                Ok(voided(String::new()))
            }
            CancelAction::Void => {
                let payment_id = row.payment_id.ok_or_else(|| {
                    HandleError::permanent("authorized payment has no payment_id")
                })?;
                self.call(tx, env, CallKind::Void, &e.order_id, payment_id, &row)
                    .await?;
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
