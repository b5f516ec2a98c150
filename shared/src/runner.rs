//! The batch runner: what every queue-triggered function does with an `aws:rmq` batch.
//!
//! Per message: decode; record it in the inbox (skipping what this consumer already did),
//! apply it, and write its outgoing events to the outbox, all or nothing (a savepoint per
//! message inside one transaction per chunk of the batch); after the commits, publish the
//! batch's events with publisher confirms. A message that can never succeed (undecodable,
//! invalid, or data Postgres refuses with SQLSTATE class 22 or 23) is parked on the
//! dead-letter exchange with its reason (confirmed) and counts as done; when Postgres
//! refuses a statement shared by a whole chunk, the chunk is run again one message per
//! transaction, so that only the message at fault is parked. A transient failure fails the invocation, so the whole batch is delivered again;
//! what was committed before it is then skipped by the inbox and its unpublished events are
//! re-sent.

use crate::envelope::{Encoding, Envelope};
use crate::error::HandleError;
use crate::faults::{Fault, Faults, Injected};
use crate::publisher::{HeaderVal, OutMessage, Publish};
use crate::rmq::{RmqEvent, RmqMessage};
use crate::topology::{Names, parked};
use async_trait::async_trait;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use tracing::Instrument as _;

/// What applying one event produced.
pub struct Applied<E> {
    /// Events to publish, written to the outbox in the same transaction.
    pub events: Vec<Envelope>,
    /// Work to do once the transaction is committed (cache refresh, delivery).
    pub effects: Vec<E>,
}

impl<E> Applied<E> {
    pub fn nothing() -> Self {
        Applied {
            events: vec![],
            effects: vec![],
        }
    }

    pub fn events(events: Vec<Envelope>) -> Self {
        Applied {
            events,
            effects: vec![],
        }
    }

    pub fn with_effect(mut self, effect: E) -> Self {
        self.effects.push(effect);
        self
    }
}

/// One queue consumer's business logic. Decoding, idempotency, outbox and publishing are
/// the runner's job; the handler only applies an event inside the given transaction.
#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    type Effect: Send + 'static;

    /// The consumer name recorded in the inbox: the function's binary name.
    fn name(&self) -> &'static str;

    /// The service's Postgres schema (its inbox and outbox live there).
    fn schema(&self) -> &'static str;

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<Self::Effect>, HandleError>;

    /// Runs once per invocation with the effects of every committed message, so that
    /// follow-up I/O can be batched (one Redis pipeline per batch, for instance). It must not
    /// fail the batch: the state is committed; log and rely on TTLs or sweeps instead.
    async fn after_commit(&self, _effects: Vec<Self::Effect>) {}

    /// True for handlers that can apply a chunk's fresh events at once (`apply_chunk`), a
    /// constant number of statements instead of a savepoint and a few statements per
    /// message: appends (the timeline) and decisions that can be taken for the whole chunk
    /// against rows locked once (inventory-reserve). A chunk that fails, for any reason, is
    /// rolled back to its savepoint and applied message by message, which parks an invalid
    /// message alone.
    fn applies_in_bulk(&self) -> bool {
        false
    }

    async fn apply_chunk(
        &self,
        _tx: &mut PgConnection,
        _events: &[&Envelope],
    ) -> Result<Applied<Self::Effect>, HandleError> {
        Err(HandleError::permanent(
            "this handler applies message by message",
        ))
    }

    /// The after-commit work of an event that was already applied, redone when it is
    /// delivered again: a crash between commit and `after_commit` (the batch was never
    /// acknowledged, so it comes back) must not leave a stale cache or an undelivered
    /// notification behind. Must be idempotent.
    async fn redelivered_effects(
        &self,
        _pool: &PgPool,
        _env: &Envelope,
    ) -> Result<Vec<Self::Effect>, HandleError> {
        Ok(vec![])
    }
}

/// What an invocation did; returned as the function's response (useful in logs and tests).
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BatchReport {
    pub processed: usize,
    pub duplicates: usize,
    pub parked: Vec<ParkedReport>,
    pub published: usize,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ParkedReport {
    pub message_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
#[error("batch failed after {committed} committed message(s), it will be retried: {source:#}")]
pub struct BatchError {
    pub committed: usize,
    #[source]
    pub source: anyhow::Error,
}

pub struct BatchRunner<H: MessageHandler> {
    pub handler: H,
    pub pool: PgPool,
    pub publisher: Arc<dyn Publish>,
    pub names: Names,
    pub encoding: Encoding,
    pub faults: Faults,
}

/// A decoded message of the batch: its queue, the message as delivered, its envelope.
type Decoded<'a> = (&'a str, &'a RmqMessage, Envelope);

/// What one committed chunk transaction adds to the batch. Nothing of it counts until the
/// commit: a chunk that fails as a whole is run again message by message, and must not
/// leave parks or duplicates behind from its first try.
struct ChunkDone<E> {
    applied: usize,
    pending: Vec<Applied<E>>,
    parks: Vec<(OutMessage, ParkedReport)>,
    duplicates: Vec<Envelope>,
    /// Routing keys of the messages finished with (applied, duplicate or parked).
    consumed: Vec<String>,
    /// A transient failure after which the chunk committed what had applied before it;
    /// the batch stops there and comes back.
    failure: Option<anyhow::Error>,
}

impl<E> Default for ChunkDone<E> {
    fn default() -> Self {
        ChunkDone {
            applied: 0,
            pending: Vec::new(),
            parks: Vec::new(),
            duplicates: Vec::new(),
            consumed: Vec::new(),
            failure: None,
        }
    }
}

/// Why a chunk's transaction was rolled back as a whole.
enum ChunkError {
    /// A statement for the whole chunk (inbox, outbox, commit) was refused because of one
    /// message's data (SQLSTATE class 22 or 23): the reason to park that message with.
    Data(String),
    /// Infrastructure trouble: the invocation fails and the batch comes back.
    Failed(anyhow::Error),
}

impl ChunkError {
    fn postgres(e: sqlx::Error, doing: &'static str) -> Self {
        match crate::error::data_error_reason(&e) {
            Some(reason) => ChunkError::Data(reason),
            None => ChunkError::Failed(anyhow::Error::new(e).context(doing)),
        }
    }
}

/// The batch so far: what committed chunks produced, what to park, what failed.
struct Batch<E> {
    report: BatchReport,
    outgoing: Vec<Envelope>,
    parks: Vec<OutMessage>,
    effects: Vec<E>,
    duplicates: Vec<Envelope>,
    failure: Option<anyhow::Error>,
}

impl<H: MessageHandler> BatchRunner<H> {
    pub async fn run(&self, event: &RmqEvent) -> Result<BatchReport, BatchError> {
        let mut batch = Batch {
            report: BatchReport::default(),
            outgoing: Vec::new(),
            parks: Vec::new(),
            effects: Vec::new(),
            duplicates: Vec::new(),
            failure: None,
        };

        let mut decoded: Vec<Decoded<'_>> = Vec::with_capacity(event.len());
        for (queue, msg) in event.messages() {
            match decode(msg) {
                Ok(env) => decoded.push((queue, msg, env)),
                Err(reason) => {
                    tracing::warn!(queue, message_id = ?msg.basic_properties.message_id, %reason, "parking undecodable message");
                    batch.parks.push(self.park(queue, msg, None, &reason));
                    batch.report.parked.push(ParkedReport {
                        message_id: msg.basic_properties.message_id.clone(),
                        reason,
                    });
                }
            }
        }

        // One transaction per chunk of messages, a savepoint per message: each message
        // still applies all or nothing, but a batch costs a few commits instead of one per
        // message. Chunks stay under the 64 subtransactions Postgres caches per backend.
        // A chunk whose shared statements refuse one message's data is run again one
        // message per transaction, so that message alone is parked.
        let mut work: std::collections::VecDeque<&[Decoded<'_>]> = decoded.chunks(CHUNK).collect();
        let mut parked_alone = std::collections::HashSet::new();
        while let Some(chunk) = work.pop_front() {
            match self.run_chunk(chunk).await {
                Ok(done) => {
                    let stop = done.failure.is_some();
                    self.absorb(&mut batch, done);
                    if batch.report.processed > 0
                        && self.faults.fires(Fault::Crash, self.handler.name())
                    {
                        // As if the process died right after this commit: nothing of the
                        // batch is published or acknowledged; the redelivery (or the relay)
                        // must send what the outbox holds.
                        return Err(BatchError {
                            committed: batch.report.processed,
                            source: Injected(Fault::Crash).into(),
                        });
                    }
                    if stop {
                        break;
                    }
                }
                Err(ChunkError::Data(reason)) if chunk.len() > 1 => {
                    tracing::warn!(function = self.handler.name(), messages = chunk.len(), %reason, "the chunk's data was refused, running it one message per transaction");
                    for one in chunk.chunks(1).rev() {
                        work.push_front(one);
                    }
                }
                Err(ChunkError::Data(reason)) => {
                    let (queue, msg, env) = &chunk[0];
                    crate::metrics::EVENTS_CONSUMED
                        .inc(&[self.handler.name(), env.event_type.as_str()]);
                    // A second copy of it in the batch is a duplicate, as in a chunk.
                    if !parked_alone.insert(env.event_uuid()) {
                        batch.report.duplicates += 1;
                        continue;
                    }
                    tracing::warn!(function = self.handler.name(), event_id = %env.event_id, %reason, "parking a message postgres refused");
                    batch.parks.push(self.park(queue, msg, Some(env), &reason));
                    batch.report.parked.push(ParkedReport {
                        message_id: Some(env.event_id.clone()),
                        reason,
                    });
                }
                Err(ChunkError::Failed(e)) => {
                    batch.failure = Some(e);
                    break;
                }
            }
        }
        let Batch {
            mut report,
            mut outgoing,
            parks,
            mut effects,
            duplicates,
            mut failure,
        } = batch;

        // Redelivered events: re-send what their first handling left unpublished (once) and
        // redo their after-commit work.
        for env in &duplicates {
            let schema = self.handler.schema();
            // Only for the timeline's delivery count: never worth failing the batch over.
            if let Err(e) = crate::db::inbox_note_duplicate(
                &self.pool,
                schema,
                self.handler.name(),
                env.event_uuid(),
            )
            .await
            {
                tracing::debug!(error = %e, "could not count the duplicate delivery");
            }
            match crate::db::outbox_unpublished_caused_by(&self.pool, schema, &env.event_id).await {
                Ok(leftovers) => {
                    for e in leftovers {
                        if !outgoing.iter().any(|o| o.event_id == e.event_id) {
                            outgoing.push(e);
                        }
                    }
                }
                Err(e) => {
                    failure
                        .get_or_insert(anyhow::Error::new(e).context("reading unpublished events"));
                }
            }
            match self.handler.redelivered_effects(&self.pool, env).await {
                Ok(redo) => effects.extend(redo),
                Err(e) => {
                    tracing::warn!(event_id = %env.event_id, error = %e, "could not redo after-commit work of a duplicate")
                }
            }
        }

        // Publish what committed even when a later message failed: fewer re-sends on retry.
        if let Err(e) = self.publish_events(&outgoing).await {
            failure.get_or_insert(e);
        } else {
            report.published = outgoing.len();
        }
        // Parks go out only when the batch succeeds: a failed batch comes back whole and its
        // invalid messages are parked then, so each lands in the dead-letter queue once.
        if failure.is_none()
            && !parks.is_empty()
            && let Err(e) = self.publisher.publish(&parks).await
        {
            failure.get_or_insert(
                anyhow::Error::new(e).context("parking on the dead-letter exchange"),
            );
        }
        // Per-message work carries its message's span (handlers may keep it in their
        // effects); this one marks what is batch-wide.
        let batch_span = tracing::info_span!(
            "after_commit",
            function = self.handler.name(),
            messages = report.processed
        );
        self.handler
            .after_commit(effects)
            .instrument(batch_span)
            .await;
        match failure {
            Some(source) => Err(BatchError {
                committed: report.processed,
                source,
            }),
            None => Ok(report),
        }
    }

    /// Adds a committed chunk to the batch.
    fn absorb(&self, batch: &mut Batch<H::Effect>, done: ChunkDone<H::Effect>) {
        batch.report.processed += done.applied;
        batch.report.duplicates += done.duplicates.len();
        batch.duplicates.extend(done.duplicates);
        for (out, parked) in done.parks {
            batch.parks.push(out);
            batch.report.parked.push(parked);
        }
        for applied in done.pending {
            batch.outgoing.extend(applied.events);
            batch.effects.extend(applied.effects);
        }
        for key in &done.consumed {
            crate::metrics::EVENTS_CONSUMED.inc(&[self.handler.name(), key]);
        }
        if let Some(e) = done.failure {
            batch.failure = Some(e);
        }
    }

    /// One chunk in one transaction: inbox for the whole chunk, each fresh message behind
    /// its savepoint (or the chunk at once for a bulk handler), the outbox, the commit.
    async fn run_chunk(&self, chunk: &[Decoded<'_>]) -> Result<ChunkDone<H::Effect>, ChunkError> {
        let mut done = ChunkDone::default();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| ChunkError::postgres(e, "postgres"))?;
        // Inbox for the whole chunk in one statement; a message seen twice in one chunk
        // is applied once.
        let keyed: Vec<(&Envelope, i64)> = chunk
            .iter()
            .map(|(_, msg, env)| (env, delivery_attempt(msg)))
            .collect();
        let mut fresh = crate::db::inbox_record_many(
            &mut tx,
            self.handler.schema(),
            self.handler.name(),
            &keyed,
        )
        .await
        .map_err(|e| ChunkError::postgres(e, "recording the inbox"))?;
        let bulk = if self.handler.applies_in_bulk() {
            self.apply_bulk(&mut tx, chunk, &fresh, &mut done).await?
        } else {
            None
        };
        if let Some(applied) = bulk {
            done.applied += applied;
            for (_, _, env) in chunk {
                // The first sighting of a fresh event was applied; any other is a duplicate.
                if !fresh.remove(&env.event_uuid()) {
                    done.duplicates.push(env.clone());
                    done.consumed.push(env.event_type.clone());
                }
            }
        }
        for (queue, msg, env) in chunk.iter().filter(|_| bulk.is_none()) {
            let span = tracing::info_span!(
                "message",
                function = self.handler.name(),
                event_id = %env.event_id,
                event_type = %env.event_type,
                order_id = %env.correlation_id,
                traceparent = %env.traceparent,
            );
            let started = std::time::Instant::now();
            let result = if fresh.remove(&env.event_uuid()) {
                self.apply_in(&mut tx, env).instrument(span.clone()).await
            } else {
                Ok(Step::Duplicate)
            };
            crate::metrics::HANDLER_DURATION
                .observe(&[self.handler.name()], started.elapsed().as_secs_f64());
            if !matches!(result, Err(HandleError::Transient(_))) {
                done.consumed.push(env.event_type.clone());
            }
            match result {
                Ok(Step::Done(applied)) => {
                    done.applied += 1;
                    done.pending.push(applied);
                }
                Ok(Step::Duplicate) => {
                    span.in_scope(|| tracing::info!("duplicate delivery skipped"));
                    done.duplicates.push(env.clone());
                }
                Err(HandleError::Permanent(reason)) => {
                    span.in_scope(|| tracing::warn!(%reason, "parking invalid message"));
                    done.parks.push((
                        self.park(queue, msg, Some(env), &reason),
                        ParkedReport {
                            message_id: Some(env.event_id.clone()),
                            reason,
                        },
                    ));
                }
                Err(HandleError::Transient(e)) => {
                    span.in_scope(|| {
                        tracing::error!(
                            error = format!("{e:#}"),
                            "transient failure, batch will be retried"
                        )
                    });
                    done.failure = Some(e);
                    break;
                }
            }
        }
        // Inbox rows of messages after a transient failure were never applied.
        if done.failure.is_some() {
            for env in chunk
                .iter()
                .map(|(_, _, e)| e)
                .filter(|e| fresh.contains(&e.event_uuid()))
            {
                crate::db::inbox_forget(
                    &mut tx,
                    self.handler.schema(),
                    self.handler.name(),
                    env.event_uuid(),
                )
                .await
                .map_err(|e| ChunkError::postgres(e, "postgres"))?;
            }
        }
        let events: Vec<Envelope> = done
            .pending
            .iter()
            .flat_map(|a| a.events.iter().cloned())
            .collect();
        crate::db::outbox_insert(&mut tx, self.handler.schema(), &events)
            .await
            .map_err(|e| ChunkError::postgres(e, "writing the outbox"))?;
        // Commit what applied, even when a later message failed: the retry skips it.
        // A deferred constraint is checked here, so the commit too can refuse the data.
        tx.commit()
            .await
            .map_err(|e| ChunkError::postgres(e, "committing the batch"))?;
        Ok(done)
    }

    /// The set-based path: the chunk's fresh events (each once) through `apply_chunk`
    /// behind a savepoint. How many were applied, or `None` to go message by message (a
    /// permanent error: one message's content, which the per-message path parks alone). A
    /// transient error fails the chunk at once: going message by message would only repeat
    /// the outage's calls once per message.
    async fn apply_bulk(
        &self,
        tx: &mut PgConnection,
        chunk: &[Decoded<'_>],
        fresh: &std::collections::HashSet<uuid::Uuid>,
        done: &mut ChunkDone<H::Effect>,
    ) -> Result<Option<usize>, ChunkError> {
        let mut seen = std::collections::HashSet::new();
        let events: Vec<&Envelope> = chunk
            .iter()
            .map(|(_, _, e)| e)
            .filter(|e| fresh.contains(&e.event_uuid()) && seen.insert(e.event_uuid()))
            .collect();
        if events.is_empty() {
            return Ok(Some(0));
        }
        sqlx::raw_sql("SAVEPOINT chunk")
            .execute(&mut *tx)
            .await
            .map_err(|e| ChunkError::postgres(e, "opening the chunk's savepoint"))?;
        // The faults a message would meet on the per-message path, rolled once per chunk: a
        // set-based handler must stay as exposed to slowness and transient errors as the
        // others (per message, a 5% error rate would fail four chunks of 32 in five).
        if self.faults.fires(Fault::Slow, self.handler.name()) {
            tokio::time::sleep(self.faults.slow_for()).await;
        }
        if self.faults.fires(Fault::Error, self.handler.name()) {
            return Err(ChunkError::Failed(Injected(Fault::Error).into()));
        }
        let started = std::time::Instant::now();
        match self.handler.apply_chunk(&mut *tx, &events).await {
            Ok(applied) => {
                let each = started.elapsed() / events.len() as u32;
                for e in &events {
                    crate::metrics::HANDLER_DURATION
                        .observe(&[self.handler.name()], each.as_secs_f64());
                    done.consumed.push(e.event_type.clone());
                }
                done.pending.push(applied);
                Ok(Some(events.len()))
            }
            Err(HandleError::Transient(e)) => Err(ChunkError::Failed(e)),
            Err(HandleError::Permanent(reason)) => {
                tracing::warn!(function = self.handler.name(), %reason, "chunk refused as a whole, applying message by message");
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT chunk")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| ChunkError::postgres(e, "rolling back the chunk"))?;
                Ok(None)
            }
        }
    }

    /// One fresh message inside the chunk's transaction, behind a savepoint: on failure its
    /// effect and its inbox record are undone together. Savepoints are not released: the
    /// next one nests, which saves a round trip per message (the chunk bounds the depth).
    async fn apply_in(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Step<H::Effect>, HandleError> {
        sqlx::raw_sql("SAVEPOINT message").execute(&mut *tx).await?;
        let result = async {
            // Injected after the inbox check, so retries make progress past what committed.
            if self.faults.fires(Fault::Slow, self.handler.name()) {
                tokio::time::sleep(self.faults.slow_for()).await;
            }
            if self.faults.fires(Fault::Error, self.handler.name()) {
                return Err(HandleError::Transient(Injected(Fault::Error).into()));
            }
            self.handler.apply(&mut *tx, env).await
        }
        .await;
        match result {
            Ok(applied) => Ok(Step::Done(applied)),
            Err(e) => {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT message")
                    .execute(&mut *tx)
                    .await?;
                crate::db::inbox_forget(
                    &mut *tx,
                    self.handler.schema(),
                    self.handler.name(),
                    env.event_uuid(),
                )
                .await?;
                Err(e)
            }
        }
    }

    async fn publish_events(&self, events: &[Envelope]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let msgs: Vec<OutMessage> = events
            .iter()
            .map(|e| OutMessage::event(&self.names, e, self.encoding))
            .collect();
        let ids: Vec<uuid::Uuid> = events.iter().map(Envelope::event_uuid).collect();
        if let Err(e) = self.publisher.publish(&msgs).await {
            // What the broker did route is delivered: only the rest stays for a re-send.
            let routed = e.routed(&ids);
            if let Err(mark) =
                crate::db::outbox_mark_published(&self.pool, self.handler.schema(), &routed).await
            {
                tracing::warn!(error = %mark, "could not mark the routed events published; they will be re-sent (consumers dedupe)");
            }
            return Err(anyhow::Error::new(e).context("publishing events"));
        }
        crate::db::outbox_mark_published(&self.pool, self.handler.schema(), &ids)
            .await
            .map_err(|e| anyhow::Error::new(e).context("marking outbox rows published"))
    }

    /// The dead-letter message: the original body and properties, plus why and from where.
    fn park(
        &self,
        queue: &str,
        msg: &RmqMessage,
        env: Option<&Envelope>,
        reason: &str,
    ) -> OutMessage {
        let props = &msg.basic_properties;
        let body = msg.body().unwrap_or_else(|_| msg.data.clone().into_bytes());
        // Quorum queues count earlier deliveries in x-delivery-count.
        let attempts = props
            .header("x-delivery-count")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            + 1;
        let routing_key = env
            .map(|e| e.event_type.clone())
            .or_else(|| props.type_.clone())
            .unwrap_or_default();
        let mut headers: Vec<(String, HeaderVal)> = props
            .headers
            .iter()
            .flatten()
            .filter(|(k, _)| !k.starts_with("x-"))
            .filter_map(|(k, v)| v.as_text().map(|t| (k.clone(), HeaderVal::Str(t))))
            .collect();
        headers.extend([
            (
                parked::REASON.to_string(),
                HeaderVal::Str(reason.to_string()),
            ),
            (
                parked::ORIGINAL_QUEUE.to_string(),
                HeaderVal::Str(queue.to_string()),
            ),
            (
                parked::ORIGINAL_ROUTING_KEY.to_string(),
                HeaderVal::Str(routing_key),
            ),
            (parked::ATTEMPTS.to_string(), HeaderVal::Int(attempts)),
            (
                parked::PARKED_AT.to_string(),
                HeaderVal::Int(chrono::Utc::now().timestamp_millis()),
            ),
            (
                parked::FUNCTION.to_string(),
                HeaderVal::Str(self.handler.name().to_string()),
            ),
        ]);
        OutMessage {
            exchange: self.names.dead_letter_exchange(),
            // The dead-letter queue of `queue` is bound to the DLX with the queue's name.
            routing_key: queue.to_string(),
            body,
            content_type: props
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            message_id: props.message_id.clone(),
            type_: props.type_.clone(),
            correlation_id: props.correlation_id.clone(),
            timestamp_ms: Some(chrono::Utc::now().timestamp_millis()),
            headers,
        }
    }
}

enum Step<E> {
    Done(Applied<E>),
    Duplicate,
}

/// Messages per transaction: under the 64 subtransactions a Postgres backend caches (past
/// that, every snapshot in the cluster pays for subtransaction lookups). Public so that the
/// bench reports the figure it ran with.
pub const CHUNK: usize = 32;

/// Which delivery of the message this is (1 = first): quorum queues count earlier
/// deliveries in `x-delivery-count`.
pub fn delivery_attempt(msg: &RmqMessage) -> i64 {
    msg.basic_properties
        .header("x-delivery-count")
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
        + 1
}

/// Body and content type to envelope; the error is the reason the message gets parked.
pub fn decode(msg: &RmqMessage) -> Result<Envelope, String> {
    let body = msg
        .body()
        .map_err(|e| format!("data is not valid base64: {e}"))?;
    let encoding = Encoding::from_content_type(msg.basic_properties.content_type.as_deref())
        .map_err(|e| e.to_string())?;
    Envelope::decode(&body, encoding).map_err(|e| e.to_string())
}
