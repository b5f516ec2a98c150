//! The RabbitMQ -> function bridge, behaving as the Amazon MQ event source does: one
//! consumer per trigger, batches of up to BatchSize or until the batching window closes,
//! the `aws:rmq` event built as AWS builds it, one invocation at a time per trigger, ack on
//! success, the whole batch back (redelivered) on failure after a backoff.

use crate::invoke::Target;
use futures::{FutureExt as _, StreamExt as _};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::time::Duration;
use tokio::sync::watch;

pub struct Trigger {
    pub function: String,
    /// The broker queue (prefixed).
    pub queue: String,
    pub vhost: String,
    pub batch_size: usize,
    pub window: Duration,
    pub target: Target,
    pub amqp_url: String,
    pub faults: shared::faults::Faults,
}

/// Consumes until `shutdown` turns true, reconnecting after any broker failure.
pub async fn run(trigger: Trigger, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::default();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match consume(&trigger, &mut shutdown, &mut backoff).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(function = %trigger.function, error = %e, "bridge lost the broker, reconnecting");
                let delay = backoff.next();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

async fn consume(
    t: &Trigger,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let conn = shared::publisher::connect(&t.amqp_url, &format!("bridge-{}", t.function)).await?;
    let ch = conn.create_channel().await?;
    // Prefetch bounds what the broker pushes to what one batch can hold.
    ch.basic_qos(
        t.batch_size.min(u16::MAX as usize) as u16,
        BasicQosOptions::default(),
    )
    .await?;
    let mut consumer = ch
        .basic_consume(
            t.queue.as_str().into(),
            format!("bridge-{}", t.function).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(function = %t.function, queue = %t.queue, "trigger consuming");
    backoff.reset();
    loop {
        let first = tokio::select! {
            next = consumer.next() => next,
            _ = shutdown.changed() => {
                let _ = conn.close(200, "shutdown".into()).await;
                return Ok(());
            }
        };
        let first = first.ok_or_else(|| anyhow::anyhow!("consumer closed"))??;
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + t.window;
        while batch.len() < t.batch_size {
            let next = if t.window.is_zero() {
                // No window: take what is already here, never wait.
                tokio::task::yield_now().await;
                match consumer.next().now_or_never() {
                    Some(n) => n,
                    None => break,
                }
            } else {
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                }
            };
            match next {
                Some(Ok(d)) => batch.push(d),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        // A batch in flight always finishes (acked or returned), even during shutdown.
        // Debug lines bracket it: the chaos suite reads them to know a batch was in flight
        // when it stopped the runner.
        tracing::debug!(queue = %t.queue, messages = batch.len(), "batch taken");
        let settled = invoke_batch(t, batch, backoff).await;
        tracing::debug!(queue = %t.queue, "batch settled");
        settled?;
    }
}

async fn invoke_batch(
    t: &Trigger,
    batch: Vec<Delivery>,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let messages = batch
        .iter()
        .map(|d| shared::rmq::message_from_amqp(&d.properties, &d.data, d.redelivered))
        .collect();
    let event = shared::rmq::event_for_queue(&t.queue, &t.vhost, messages);
    let json = serde_json::to_value(&event)?;
    let n = batch.len();
    let fname = t.function.as_str();
    if t.faults.fires(shared::faults::Fault::Duplicate, fname) {
        // Injected duplicate delivery: the function sees the batch twice, as after a lost ack.
        let mut again = event.clone();
        again
            .rmq_messages_by_queue
            .values_mut()
            .flatten()
            .for_each(|m| m.redelivered = true);
        if let Err(e) = t.target.invoke(serde_json::to_value(&again)?).await {
            tracing::warn!(function = fname, error = %e, "injected duplicate delivery failed");
        }
    }
    // Invocations are counted here (as Lambda's own metrics would); batch sizes, durations
    // and message outcomes by the function itself (`shared::lambda::RmqFunction`).
    let started = std::time::Instant::now();
    let answer = t.target.invoke(json).await;
    shared::metrics::invocation(fname, answer.as_ref().ok(), started.elapsed());
    match answer {
        Ok(_) => {
            // One frame settles the batch: a batch is a contiguous run of this channel's
            // deliveries, so acknowledging its last tag with `multiple` covers all of them.
            if let Some(last) = batch.last() {
                last.ack(BasicAckOptions { multiple: true }).await?;
            }
            backoff.reset();
        }
        Err(error) => {
            let delay = backoff.next();
            tracing::warn!(function = fname, messages = n, %error, retry_in_ms = delay.as_millis() as u64, "invocation failed, batch goes back");
            // Hold the batch while backing off, as one Lambda trigger would, then return it
            // whole; the quorum queue counts the delivery and dead-letters past its limit.
            tokio::time::sleep(delay).await;
            if let Some(last) = batch.last() {
                last.nack(BasicNackOptions {
                    requeue: true,
                    multiple: true,
                })
                .await?;
            }
        }
    }
    Ok(())
}

/// Exponential backoff, 100 ms doubling to 5 s.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = Duration::from_millis(100u64.saturating_mul(1 << self.failures.min(6)))
            .min(Duration::from_secs(5));
        self.failures += 1;
        d
    }
    fn reset(&mut self) {
        self.failures = 0;
    }
}
