//! Publishing with publisher confirms over lazily (re)connected channels.
//!
//! A publish only counts when the broker has confirmed it and routed it to a queue: a
//! nack, a lost connection or a message the broker returns as unroutable (every publish is
//! `mandatory`) is an error, the caller keeps the outbox row unpublished and a retry (or
//! the relay) sends it. A confirm alone would not do: the broker acks a message that no
//! queue is bound for, and drops it.

use crate::envelope::{Encoding, Envelope};
use crate::topology::Names;
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// One message ready for the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub content_type: String,
    pub message_id: Option<String>,
    pub type_: Option<String>,
    pub correlation_id: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, HeaderVal)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeaderVal {
    Str(String),
    Int(i64),
}

impl OutMessage {
    /// An event for the topic exchange, its envelope mirrored onto AMQP properties.
    pub fn event(names: &Names, env: &Envelope, encoding: Encoding) -> Self {
        OutMessage {
            exchange: names.events_exchange(),
            routing_key: env.event_type.clone(),
            body: env.encode(encoding),
            content_type: encoding.content_type().to_string(),
            message_id: Some(env.event_id.clone()),
            type_: Some(env.event_type.clone()),
            correlation_id: Some(env.correlation_id.clone()),
            timestamp_ms: Some(env.occurred_at_ms),
            headers: env
                .amqp_headers()
                .into_iter()
                .map(|(k, v)| (k.to_string(), HeaderVal::Str(v)))
                .collect(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&HeaderVal> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot reach the broker at {url}: {source}")]
    Connect { url: String, source: lapin::Error },
    #[error("broker error while publishing: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker nacked {0} message(s)")]
    Nacked(usize),
    #[error("no confirm from the broker within {0:?}")]
    Timeout(Duration),
    /// The broker confirmed but returned these messages: no queue is bound for their
    /// routing key on that exchange, so nobody would ever have received them.
    #[error(
        "the broker returned {count} unroutable message(s), the first to exchange {exchange:?} \
         with routing key {routing_key:?}: no queue is bound for it"
    )]
    Unroutable {
        count: usize,
        exchange: String,
        routing_key: String,
        /// The `message_id` of every returned message (the event id for events).
        message_ids: Vec<String>,
    },
}

impl PublishError {
    /// The messages of a failed publish that the broker did route after all: only an
    /// unroutable publish tells them apart, for any other error none is known delivered.
    /// Callers mark these published so that only the returned ones are sent again.
    pub fn routed(&self, sent: &[uuid::Uuid]) -> Vec<uuid::Uuid> {
        let PublishError::Unroutable {
            count, message_ids, ..
        } = self
        else {
            return Vec::new();
        };
        let returned: std::collections::HashSet<uuid::Uuid> = message_ids
            .iter()
            .filter_map(|id| uuid::Uuid::parse_str(id).ok())
            .collect();
        // A returned message without its event id could be any of them: none is known routed.
        if returned.len() != *count {
            return Vec::new();
        }
        sent.iter()
            .filter(|id| !returned.contains(id))
            .copied()
            .collect()
    }
}

/// The outcome of a batch from its confirms: a nack first (the broker lost a message), then
/// any returned message (it was confirmed, and dropped, because nothing routes it).
fn verdict(confirms: Vec<Confirmation>) -> Result<(), PublishError> {
    let mut nacked = 0;
    let mut returned = Vec::new();
    for confirm in confirms {
        if confirm.is_nack() {
            nacked += 1;
        }
        // lapin hands each returned message to the next confirm it resolves, not always
        // its own: the count is right for the batch, and the message says where it went.
        if let Some(message) = confirm.take_message() {
            returned.push(message);
        }
    }
    if nacked > 0 {
        return Err(PublishError::Nacked(nacked));
    }
    let Some(first) = returned.first() else {
        return Ok(());
    };
    Err(PublishError::Unroutable {
        count: returned.len(),
        exchange: first.delivery.exchange.to_string(),
        routing_key: first.delivery.routing_key.to_string(),
        message_ids: returned
            .iter()
            .filter_map(|m| m.delivery.properties.message_id().as_ref())
            .map(|id| id.to_string())
            .collect(),
    })
}

/// The port the batch runner and HTTP handlers publish through; tests pass a fake.
#[async_trait]
pub trait Publish: Send + Sync {
    /// Publishes every message and returns once the broker confirmed all of them.
    async fn publish(&self, messages: &[OutMessage]) -> Result<(), PublishError>;
}

/// lapin publisher: one connection per execution environment, re-established on the next
/// publish after any failure (frozen Lambda, broker restart), and confirm-mode channels
/// each used by one publish at a time. Returned messages are matched to confirms per
/// channel, so two batches sharing a channel (the local runner hosts every function in one
/// process) could each be blamed for the other's unroutable message.
///
/// A connection can go stale without lapin knowing: a Lambda environment frozen between
/// invocations misses the broker's heartbeats, the broker (or a NAT on the way) drops the
/// connection, and the first publish after the thaw is written to a dead socket. So a
/// publish that fails with a broker error is tried once more on a new connection before
/// the batch fails; a duplicate that may cause is what consumers' inboxes are for.
#[derive(Clone)]
pub struct AmqpPublisher {
    url: String,
    /// Shown by the broker as the connection's name (`orderflow-<name>`).
    name: String,
    state: Arc<Mutex<Pool>>,
    confirm_timeout: Duration,
}

#[derive(Default)]
struct Pool {
    conn: Option<Connection>,
    idle: Vec<Channel>,
}

/// Idle channels kept for reuse: about one per function publishing at once.
const MAX_IDLE_CHANNELS: usize = 16;

impl AmqpPublisher {
    pub fn new(url: impl Into<String>) -> Self {
        Self::named(url, "publisher")
    }

    /// Same, with the connection shown by the broker as `orderflow-<name>`.
    pub fn named(url: impl Into<String>, name: impl Into<String>) -> Self {
        AmqpPublisher {
            url: url.into(),
            name: name.into(),
            state: Arc::new(Mutex::new(Pool::default())),
            confirm_timeout: Duration::from_secs(10),
        }
    }

    /// A confirm-mode channel for this publish alone; `check_in` gives it back.
    async fn check_out(&self) -> Result<Channel, PublishError> {
        let mut pool = self.state.lock().await;
        let conn = match pool.conn.take() {
            Some(conn) if conn.status().connected() => conn,
            _ => {
                pool.idle.clear();
                connect(&self.url, &self.name).await?
            }
        };
        let mut idle = None;
        while let Some(ch) = pool.idle.pop() {
            if ch.status().connected() {
                idle = Some(ch);
                break;
            }
        }
        let ch = match idle {
            Some(ch) => Ok(ch),
            None => confirm_channel(&conn).await,
        };
        pool.conn = Some(conn);
        ch
    }

    async fn check_in(&self, ch: Channel) {
        let mut pool = self.state.lock().await;
        if pool.idle.len() < MAX_IDLE_CHANNELS && ch.status().connected() {
            pool.idle.push(ch);
        }
    }

    async fn reset(&self) {
        let conn = {
            let mut pool = self.state.lock().await;
            pool.idle.clear();
            pool.conn.take()
        };
        if let Some(conn) = conn {
            let _ = conn.close(0, "reset after error".into()).await;
        }
    }

    async fn publish_on(&self, ch: &Channel, messages: &[OutMessage]) -> Result<(), PublishError> {
        // Publish everything first, then await the confirms together: the broker confirms in
        // pipelined fashion, so a batch costs about one round trip, not one per message.
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let confirm = ch
                .basic_publish(
                    m.exchange.as_str().into(),
                    m.routing_key.as_str().into(),
                    // Returned, not silently dropped, when no queue is bound for the key.
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &m.body,
                    amqp_properties(m),
                )
                .await?;
            pending.push(confirm);
        }
        let all = futures::future::try_join_all(pending);
        let confirms = tokio::time::timeout(self.confirm_timeout, all)
            .await
            .map_err(|_| PublishError::Timeout(self.confirm_timeout))??;
        verdict(confirms)
    }
}

impl AmqpPublisher {
    /// One try: a channel, the publish, and the channel back (or the connection reset).
    async fn attempt(&self, messages: &[OutMessage]) -> Result<(), PublishError> {
        let ch = self.check_out().await?;
        let result = self.publish_on(&ch, messages).await;
        match &result {
            // The channel is healthy: the broker answered every message.
            Ok(()) | Err(PublishError::Unroutable { .. }) => self.check_in(ch).await,
            Err(_) => self.reset().await,
        }
        result
    }
}

#[async_trait]
impl Publish for AmqpPublisher {
    async fn publish(&self, messages: &[OutMessage]) -> Result<(), PublishError> {
        if messages.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut result = self.attempt(messages).await;
        // Only a broker (I/O, channel or connection) error says the connection may have
        // been stale; a nack, a timeout or an unroutable message would fail again.
        if let Err(e @ PublishError::Broker(_)) = &result {
            tracing::warn!(error = %e, "publish failed on a stale connection: reconnecting and retrying once");
            result = self.attempt(messages).await;
        }
        record(messages, started.elapsed(), &result);
        result
    }
}

/// Confirm latency and what was published, by routing key; parked messages (they carry
/// the park reason) are counted by the runner as messages parked, not as events.
fn record(messages: &[OutMessage], elapsed: Duration, result: &Result<(), PublishError>) {
    use crate::metrics::{CONFIRM_LATENCY, EVENTS_PUBLISHED, PUBLISH_FAILURES};
    if let Err(e) = result {
        if matches!(e, PublishError::Unroutable { .. }) {
            tracing::error!(error = %e, "unroutable publish: the topology has no queue for these events");
        }
        PUBLISH_FAILURES.inc(&[]);
        return;
    }
    CONFIRM_LATENCY.observe(&[], elapsed.as_secs_f64());
    for m in messages {
        if m.header(crate::topology::parked::REASON).is_none() {
            EVENTS_PUBLISHED.inc(&[&m.routing_key]);
        }
    }
}

async fn confirm_channel(conn: &Connection) -> Result<Channel, PublishError> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}

/// Opens a connection, naming the URL (password hidden) when it fails.
pub async fn connect(url: &str, name: &str) -> Result<Connection, PublishError> {
    let props =
        ConnectionProperties::default().with_connection_name(format!("orderflow-{name}").into());
    Connection::connect(url, props)
        .await
        .map_err(|source| PublishError::Connect {
            url: crate::config::redact(url),
            source,
        })
}

pub fn amqp_properties(m: &OutMessage) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in &m.headers {
        let value = match v {
            HeaderVal::Str(s) => AMQPValue::LongString(s.as_str().into()),
            HeaderVal::Int(i) => AMQPValue::LongLongInt(*i),
        };
        headers.insert(ShortString::from(k.as_str()), value);
    }
    let mut p = BasicProperties::default()
        .with_content_type(m.content_type.as_str().into())
        .with_delivery_mode(2) // persistent
        .with_headers(headers);
    if let Some(id) = &m.message_id {
        p = p.with_message_id(id.as_str().into());
    }
    if let Some(t) = &m.type_ {
        p = p.with_type(t.as_str().into());
    }
    if let Some(c) = &m.correlation_id {
        p = p.with_correlation_id(c.as_str().into());
    }
    if let Some(ts) = m.timestamp_ms {
        p = p.with_timestamp((ts.max(0) / 1000) as u64);
    }
    p
}

/// Records what would have been published; for tests of handlers and the batch runner.
#[derive(Default, Clone)]
pub struct RecordingPublisher {
    pub sent: Arc<std::sync::Mutex<Vec<OutMessage>>>,
    /// When true every publish fails, as with the broker down.
    pub fail: Arc<std::sync::atomic::AtomicBool>,
}

impl RecordingPublisher {
    pub fn sent(&self) -> Vec<OutMessage> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Publish for RecordingPublisher {
    async fn publish(&self, messages: &[OutMessage]) -> Result<(), PublishError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PublishError::Timeout(Duration::ZERO));
        }
        if let Ok(mut v) = self.sent.lock() {
            v.extend_from_slice(messages);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_without_a_returned_message_are_a_success_and_a_nack_is_not() {
        assert!(verdict(vec![Confirmation::Ack(None), Confirmation::Ack(None)]).is_ok());
        assert!(matches!(
            verdict(vec![Confirmation::Ack(None), Confirmation::Nack(None)]),
            Err(PublishError::Nacked(1))
        ));
    }

    #[test]
    fn only_an_unroutable_publish_names_the_messages_that_were_routed() {
        let ids: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::now_v7()).collect();
        let unroutable = |count, message_ids: Vec<String>| PublishError::Unroutable {
            count,
            exchange: "orderflow.events".into(),
            routing_key: "stock.released".into(),
            message_ids,
        };
        assert_eq!(
            unroutable(1, vec![ids[1].to_string()]).routed(&ids),
            [ids[0], ids[2]]
        );
        // Two returned, one without an id: which one is unknown, so none counts as routed.
        assert!(
            unroutable(2, vec![ids[1].to_string()])
                .routed(&ids)
                .is_empty()
        );
        assert!(PublishError::Nacked(1).routed(&ids).is_empty());
        assert!(
            PublishError::Timeout(Duration::ZERO)
                .routed(&ids)
                .is_empty()
        );
    }
}
