//! The runner's side of the metrics defined once in `shared::metrics`: `/metrics` serves
//! that registry, and this poller fills in what no function invocation sees, from the
//! sources themselves every few seconds: each template queue's depth and its dead letters
//! (passive `queue.declare` on the broker), every service's outbox lag, and orders by state.
//! Functions record their own figures (invocations, batches, handlers, publishes, the saga,
//! the stock cache) as they run in-process.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use shared::context::Context;
use shared::metrics::{DEAD_LETTERS, QUEUE_DEPTH};
use std::time::Duration;
use tokio::sync::watch;

/// How often the poller reads the sources (faster when schedules are sped up).
pub const POLL_EVERY: Duration = Duration::from_secs(5);

/// `/metrics` in the Prometheus text format.
pub fn render() -> String {
    shared::metrics::render()
}

/// Polls until `shutdown` turns true; a failed source is logged and retried next tick.
pub async fn poll(
    ctx: Context,
    queues: Vec<String>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut poller = Poller::new(ctx, queues);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        poller.poll_once().await;
    }
    if let Some((conn, _)) = poller.broker.take() {
        let _ = conn.close(200, "metrics poller stopped".into()).await;
    }
}

pub struct Poller {
    pub ctx: Context,
    /// Template queue names (unprefixed): the `queue` label.
    pub queues: Vec<String>,
    broker: Option<(Connection, Channel)>,
}

impl Poller {
    pub fn new(ctx: Context, queues: Vec<String>) -> Self {
        Poller {
            ctx,
            queues,
            broker: None,
        }
    }

    /// Reads every source once and sets the gauges; true when all of them answered.
    pub async fn poll_once(&mut self) -> bool {
        let mut ok = true;
        if let Err(e) = self.queue_depths().await {
            tracing::debug!(error = %e, "metrics: queue depths unavailable");
            self.broker = None;
            ok = false;
        }
        for schema in crate::registry::OUTBOX_SCHEMAS {
            if let Err(e) = shared::lambda::outbox_gauges(&self.ctx, schema).await {
                tracing::debug!(error = %e, schema, "metrics: outbox lag unavailable");
                ok = false;
            }
        }
        if let Err(e) = order::record_order_gauges(&self.ctx.pool).await {
            tracing::debug!(error = %e, "metrics: orders by state unavailable");
            ok = false;
        }
        ok
    }

    async fn queue_depths(&mut self) -> anyhow::Result<()> {
        let ch = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let names = &self.ctx.names;
        for q in &self.queues {
            for (gauge, name) in [
                (&QUEUE_DEPTH, names.queue(q)),
                (&DEAD_LETTERS, names.dead_letter_queue(q)),
            ] {
                let state = ch
                    .queue_declare(name.as_str().into(), passive, FieldTable::default())
                    .await?;
                gauge.set(&[q], f64::from(state.message_count()));
            }
        }
        Ok(())
    }

    /// One connection for the poller's life, reopened after any failure (a passive declare
    /// of a missing queue closes the channel).
    async fn channel(&mut self) -> anyhow::Result<Channel> {
        if let Some((conn, ch)) = &self.broker
            && conn.status().connected()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        if let Some((conn, _)) = self.broker.take() {
            let _ = conn.close(200, "reconnecting".into()).await;
        }
        let conn = shared::publisher::connect(&self.ctx.config.amqp_url, "metrics").await?;
        let ch = conn.create_channel().await?;
        self.broker = Some((conn, ch.clone()));
        Ok(ch)
    }
}
