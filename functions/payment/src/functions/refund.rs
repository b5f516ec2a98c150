//! `payment-refund` (refund.requested): an admin's refund paid back once per refund id,
//! within what was captured; and the refund at the gateway that `payment-settle` also
//! makes for a cancel after capture.

use crate::domain::{self, RefundAction};
use crate::gateway::{CallKind, PaymentGateway, RefundError, SettleRequest, call_key};
use crate::pg::{LedgerEntry, LockedPayment, PgPayments};
use async_trait::async_trait;
use shared::contracts::{Payload, PaymentRefundFailed, PaymentRefunded, RefundRequested};
use shared::lambda::RmqFunction;
use shared::runner::{Applied, MessageHandler};
use shared::{Envelope, Function, HandleError};
use sqlx::PgConnection;
use std::sync::Arc;

pub const REFUND: &str = "payment-refund";

/// One refund to make: of which order, under which refund id, how much, and whom the
/// `payment.refunded` names.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refunding<'a> {
    pub order_id: &'a str,
    pub refund_id: &'a str,
    pub amount_cents: i64,
    pub user_id: &'a str,
    pub customer_email: &'a str,
}

/// Asks the gateway for the refund under the key of its refund id, writes the call to the
/// ledger (with the gateway's refund id, or as declined) and what was given back to the
/// payment, in the message's transaction. Returns `payment.refunded`, or
/// `payment.refund_failed` with the gateway's code when it declined.
pub(super) async fn refund_at_gateway(
    gateway: &dyn PaymentGateway,
    tx: &mut PgConnection,
    env: &Envelope,
    row: &LockedPayment,
    r: Refunding<'_>,
) -> Result<Payload, HandleError> {
    let payment_id = row
        .payment_id
        .ok_or_else(|| HandleError::permanent("captured payment has no payment_id"))?;
    let key = call_key(CallKind::Refund, r.refund_id);
    let provider_ref = row
        .provider_ref
        .clone()
        .unwrap_or_else(|| payment_id.to_string());
    let request = SettleRequest {
        idempotency_key: &key,
        order_id: r.order_id,
        payment_id,
        provider_ref: &provider_ref,
        amount_cents: r.amount_cents,
        currency: &row.currency,
    };
    let answer = match gateway.refund(request).await {
        Ok(refund) => Ok(refund.gateway_refund_id),
        Err(RefundError::Declined(d)) => Err(d.code),
        Err(RefundError::Unavailable(e)) => {
            return Err(HandleError::Transient(e.context("payment gateway")));
        }
    };
    PgPayments::record_call(
        tx,
        LedgerEntry {
            idempotency_key: &key,
            order_id: r.order_id,
            kind: CallKind::Refund,
            outcome: if answer.is_ok() {
                "succeeded"
            } else {
                "declined"
            },
            amount_cents: r.amount_cents,
            currency: &row.currency,
            gateway_ref: Some(payment_id),
            caused_by: &env.event_id,
            gateway_refund_id: answer.as_ref().ok().map(String::as_str),
        },
    )
    .await?;
    match answer {
        Ok(gateway_refund_id) => {
            PgPayments::add_refunded(tx, r.order_id, r.amount_cents).await?;
            tracing::info!(%payment_id, refund_id = r.refund_id, amount_cents = r.amount_cents, %gateway_refund_id, "payment refunded");
            Ok(Payload::PaymentRefunded(PaymentRefunded {
                order_id: r.order_id.to_string(),
                refund_id: r.refund_id.to_string(),
                payment_id: payment_id.to_string(),
                amount_cents: r.amount_cents,
                currency: row.currency.clone(),
                gateway_refund_id,
                user_id: r.user_id.to_string(),
                customer_email: r.customer_email.to_string(),
            }))
        }
        Err(code) => {
            tracing::warn!(%payment_id, refund_id = r.refund_id, amount_cents = r.amount_cents, decline_code = %code, "refund declined by the gateway");
            Ok(refund_failed(r, &row.currency, &code))
        }
    }
}

fn refund_failed(r: Refunding<'_>, currency: &str, reason: &str) -> Payload {
    Payload::PaymentRefundFailed(PaymentRefundFailed {
        order_id: r.order_id.to_string(),
        refund_id: r.refund_id.to_string(),
        amount_cents: r.amount_cents,
        currency: currency.to_string(),
        reason: if reason.is_empty() {
            "gateway_declined".into()
        } else {
            reason.to_string()
        },
    })
}

/// `payment-refund` with the gateway the configuration chooses (`gateway::from_config`).
pub fn refund(ctx: &shared::context::Context) -> Arc<dyn Function> {
    match crate::gateway::from_config(&ctx.config) {
        Ok(gateway) => refund_with(ctx, gateway),
        Err(e) => shared::lambda::misconfigured(REFUND, e),
    }
}

pub fn refund_with(
    ctx: &shared::context::Context,
    gateway: Arc<dyn PaymentGateway>,
) -> Arc<dyn Function> {
    Arc::new(RmqFunction(ctx.batch_runner(Refund { gateway })))
}

/// Pays an admin's refund back once per refund id, within what was captured.
pub struct Refund {
    pub gateway: Arc<dyn PaymentGateway>,
}

#[async_trait]
impl MessageHandler for Refund {
    type Effect = ();

    fn name(&self) -> &'static str {
        REFUND
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<()>, HandleError> {
        let Payload::RefundRequested(e) = env.payload() else {
            return Err(HandleError::unexpected(env));
        };
        domain::validate_refund(&e.order_id, &e.refund_id, e.amount_cents)
            .map_err(HandleError::Permanent)?;
        self.requested(tx, env, e).await
    }
}

impl Refund {
    async fn requested(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
        e: &RefundRequested,
    ) -> Result<Applied<()>, HandleError> {
        // The payment row's lock orders this refund after the capture and any other
        // refund of the order, so captured - refunded below is current.
        let row = PgPayments::lock_or_create(tx, &e.order_id).await?;
        let key = call_key(CallKind::Refund, &e.refund_id);
        if let Some(outcome) = PgPayments::call_outcome(tx, &key).await? {
            // Another event with this refund id (a re-publish) was decided already.
            tracing::info!(refund_id = %e.refund_id, %outcome, "refund already made");
            return Ok(Applied::nothing());
        }
        let refund = Refunding {
            order_id: &e.order_id,
            refund_id: &e.refund_id,
            amount_cents: e.amount_cents,
            user_id: &e.user_id,
            customer_email: &e.customer_email,
        };
        let event = match domain::on_refund_requested(
            row.status,
            row.amount_cents,
            row.refunded_cents,
            &row.currency,
            e.amount_cents,
            &e.currency,
        ) {
            RefundAction::NotYet => {
                return Err(HandleError::Transient(anyhow::anyhow!(
                    "payment of order {} is {}, not captured yet: the refund waits for the capture",
                    e.order_id,
                    row.status
                )));
            }
            RefundAction::Fail(reason) => {
                tracing::warn!(refund_id = %e.refund_id, amount_cents = e.amount_cents, captured = row.amount_cents, refunded = row.refunded_cents, %reason, "refund refused");
                let currency = if e.currency.is_empty() {
                    &row.currency
                } else {
                    &e.currency
                };
                refund_failed(refund, currency, reason)
            }
            RefundAction::Refund => {
                refund_at_gateway(&*self.gateway, tx, env, &row, refund).await?
            }
        };
        Ok(Applied::events(vec![Envelope::new(event, Some(env))]))
    }
}
