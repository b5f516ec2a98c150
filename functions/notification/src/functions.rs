//! `notification-send`: order events in (created, confirmed, cancelled, shipped,
//! delivered) and `payment.refunded`, one notification per order and kind out (one per
//! refund for refunds).

use crate::channel::{Delivery, LogChannel, NotificationChannel, Outgoing};
use crate::webhook::{WebhookChannel, WebhookConfigError};
use crate::{SCHEMA, domain, pg};
use async_trait::async_trait;
use shared::HandleError;
use shared::context::Context;
use shared::contracts::{NotificationSent, Payload};
use shared::envelope::Envelope;
use shared::lambda::{Function, RmqFunction};
use shared::runner::{Applied, MessageHandler};
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use tracing::Instrument as _;

pub const SEND: &str = "notification-send";

/// Records notifications in the message's transaction, delivers them after the commit.
pub struct SendHandler {
    pool: PgPool,
    channel: Arc<dyn NotificationChannel>,
}

impl SendHandler {
    pub fn new(pool: PgPool, channel: Arc<dyn NotificationChannel>) -> Self {
        SendHandler { pool, channel }
    }
}

impl SendHandler {
    /// The `notification.sent` event of a new notification, caused by `cause`.
    fn sent(&self, created: &Outgoing, kind: domain::Kind, cause: &Envelope) -> Envelope {
        Envelope::new(
            Payload::NotificationSent(NotificationSent {
                order_id: created.order_id.clone(),
                kind: kind.proto() as i32,
                channel: self.channel.name().to_string(),
                notification_id: created.notification_id.to_string(),
            }),
            Some(cause),
        )
    }
}

#[async_trait]
impl MessageHandler for SendHandler {
    type Effect = Outgoing;

    fn name(&self) -> &'static str {
        SEND
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn applies_in_bulk(&self) -> bool {
        true
    }

    /// A chunk's notifications in one insert. An event that cannot become a notification
    /// refuses the whole chunk, which the runner then applies message by message, parking
    /// that event alone.
    async fn apply_chunk(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope],
    ) -> Result<Applied<Outgoing>, HandleError> {
        let drafts = events
            .iter()
            .map(|env| domain::draft(env.payload()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HandleError::permanent(e.to_string()))?;
        let refs: Vec<&domain::Draft> = drafts.iter().collect();
        let created = pg::insert_many(tx, &refs, self.channel.name()).await?;
        let mut applied = Applied::nothing();
        let mut made = vec![false; drafts.len()];
        for (i, outgoing) in created {
            made[i] = true;
            applied
                .events
                .push(self.sent(&outgoing, drafts[i].kind, events[i]));
            applied.effects.push(outgoing);
        }
        for (draft, _) in drafts.iter().zip(&made).filter(|(_, made)| !**made) {
            tracing::info!(order_id = %draft.order_id, kind = draft.kind.as_str(), "notification already exists");
        }
        Ok(applied)
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<Outgoing>, HandleError> {
        let draft =
            domain::draft(env.payload()).map_err(|e| HandleError::permanent(e.to_string()))?;
        let Some(created) = pg::insert(tx, &draft, self.channel.name()).await? else {
            // Another event (a re-publish with a new id) already produced this notification.
            tracing::info!(order_id = %draft.order_id, kind = draft.kind.as_str(), "notification already exists");
            return Ok(Applied::nothing());
        };
        let sent = self.sent(&created, draft.kind, env);
        Ok(Applied::events(vec![sent]).with_effect(created))
    }

    async fn redelivered_effects(
        &self,
        pool: &sqlx::PgPool,
        env: &Envelope,
    ) -> Result<Vec<Outgoing>, HandleError> {
        // Delivery is at-least-once; receivers dedupe on the Idempotency-Key.
        Ok(pg::pending_for_order(pool, &env.correlation_id).await?)
    }

    async fn after_commit(&self, mut effects: Vec<Outgoing>) {
        // A duplicate in the same batch as its original redoes the same delivery.
        effects.sort_by_key(|n| n.notification_id);
        effects.dedup_by_key(|n| n.notification_id);
        if effects.is_empty() {
            return;
        }
        // Deliveries run after the batch, outside the messages' spans: each gets its own,
        // so the channel's log lines (retries included) carry the order they are about.
        let outcomes = futures::future::join_all(effects.iter().map(|n| {
            let span = tracing::info_span!(
                "notification",
                order_id = %n.order_id,
                notification_id = %n.notification_id,
                kind = %n.kind,
            );
            self.channel.deliver(n).instrument(span)
        }))
        .await;
        let (mut delivered, mut failed) = (Vec::new(), Vec::new());
        for (n, outcome) in effects.iter().zip(outcomes) {
            let attempts = i32::try_from(outcome.attempts()).unwrap_or(i32::MAX);
            match outcome {
                Delivery::Delivered { .. } => delivered.push((n.notification_id, attempts)),
                Delivery::Failed { error, .. } => {
                    tracing::warn!(notification_id = %n.notification_id, order_id = %n.order_id, kind = %n.kind, attempts, %error, "notification delivery failed");
                    failed.push((n.notification_id, attempts));
                }
            }
        }
        // The notifications are committed either way; a lost status update leaves them
        // `pending`, visible to operators, and never fails the batch.
        if let Err(e) = pg::mark_delivered(&self.pool, &delivered).await {
            tracing::error!(error = %e, count = delivered.len(), "could not record delivered notifications");
        }
        if let Err(e) = pg::mark_failed(&self.pool, &failed).await {
            tracing::error!(error = %e, count = failed.len(), "could not record failed notifications");
        }
    }
}

/// The channel the configuration asks for: the signed webhook when `webhook_url` is set.
/// A webhook that cannot be built (plain http to another host, no or a bad secret) is an
/// error, never a silent fall-back to the log: notifications would stop reaching the
/// receiver while every one of them looked delivered.
pub fn channel_for(ctx: &Context) -> Result<Arc<dyn NotificationChannel>, WebhookConfigError> {
    let config = &ctx.config;
    let Some(url) = config.webhook_url.as_deref() else {
        return Ok(Arc::new(LogChannel));
    };
    let secret = match (&config.webhook_secret, &config.webhook_secret_arn) {
        (Some(secret), _) => secret.expose(),
        (None, Some(_)) => return Err(WebhookConfigError::SecretArnOnly),
        (None, None) => return Err(WebhookConfigError::NoSecret),
    };
    Ok(Arc::new(WebhookChannel::new(url, secret)?))
}

/// `notification-send` (queue notification-send <- order.created, order.confirmed,
/// order.cancelled, order.shipped, order.delivered, payment.refunded).
pub fn send(ctx: &Context) -> Arc<dyn Function> {
    match channel_for(ctx) {
        Ok(channel) => send_with(ctx, channel),
        Err(e) => shared::lambda::misconfigured(SEND, e),
    }
}

/// Same, delivering through `channel` (tests and the local runner may pass their own).
pub fn send_with(ctx: &Context, channel: Arc<dyn NotificationChannel>) -> Arc<dyn Function> {
    let handler = SendHandler::new(ctx.pool.clone(), channel);
    Arc::new(RmqFunction(ctx.batch_runner(handler)))
}

/// Binary name of the outbox relay.
pub const RELAY: &str = "notification-relay";

/// `notification-relay` (schedule): re-sends outbox rows a crash or an outage left behind.
pub fn relay(ctx: &Context) -> Arc<dyn Function> {
    shared::lambda::outbox_relay(ctx, crate::SCHEMA)
}
