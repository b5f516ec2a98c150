//! `orderflow timeline <order-id>`: one order across every service, from what the services
//! record. The events come from `order-timeline`'s record (everything seen on the bus) and
//! every service's outbox (including what is not published yet); each event's consumers
//! from every service's inbox (attempts, duplicates skipped, when it committed) and from the
//! dead-letter queues (parked, with the reason); a function the template binds to the
//! event's routing key that shows in neither is still `pending`. Events are listed in causal
//! order: each after the event that caused it.

use crate::template::{FunctionSpec, Trigger};
use chrono::{DateTime, Utc};
use order::domain::timeline::{Causal, causal_order};
use serde::Serialize;
use shared::context::Context;
use shared::db::InboxRow;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub order_id: String,
    /// `None` when the order service has no such order.
    pub status: Option<String>,
    pub reason: Option<String>,
    /// The trace id of the order's first event; every event should share it.
    pub trace_id: Option<String>,
    pub events: Vec<EventLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    pub event_id: String,
    pub event_type: String,
    /// `None` for the first event of the order.
    pub causation_id: Option<String>,
    /// What it said (`failed: card_declined`), as `order-timeline` recorded it.
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
    pub trace_id: Option<String>,
    /// The service whose outbox holds the event.
    pub published_by: Option<String>,
    /// `None` while the event waits in its outbox (or its outbox row is unknown).
    pub published_at: Option<DateTime<Utc>>,
    /// When `order-timeline` recorded it off the bus.
    pub recorded_at: Option<DateTime<Utc>>,
    pub consumers: Vec<Consumption>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Consumption {
    pub function: String,
    /// `processed`, `parked` or `pending`.
    pub outcome: &'static str,
    /// The delivery (1 = first) on which the consumer committed it.
    pub attempts: Option<i32>,
    /// Later deliveries the consumer skipped as duplicates.
    pub duplicates: i32,
    pub processed_at: Option<DateTime<Utc>>,
    /// `processed_at - occurred_at`.
    pub latency_ms: Option<i64>,
    pub dead_letter: Option<DeadLetterState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterState {
    /// The id `orderflow dlq show|replay|discard` takes.
    pub id: String,
    pub queue: String,
    pub reason: String,
    pub attempts: i64,
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

impl Causal for EventLine {
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn causation_id(&self) -> String {
        self.causation_id.clone().unwrap_or_default()
    }
    fn occurred_at_ms(&self) -> i64 {
        self.occurred_at.timestamp_millis()
    }
}

fn trace_id(traceparent: &str) -> Option<String> {
    shared::telemetry::parse_traceparent(traceparent).map(|(t, _)| t.to_string())
}

/// Functions that consume specific routing keys, by their bindings; catch-all consumers
/// (`#`, the timeline recorder itself) are left out.
fn consumers_by_binding(specs: &[FunctionSpec]) -> Vec<(String, Vec<String>)> {
    specs
        .iter()
        .flat_map(|s| {
            s.triggers.iter().filter_map(move |t| match t {
                Trigger::Mq { routing_keys, .. } if !routing_keys.iter().any(|k| k == "#") => {
                    Some((s.binary.clone(), routing_keys.clone()))
                }
                _ => None,
            })
        })
        .collect()
}

/// Functions bound to every routing key (`#`): the timeline recorder.
fn catch_all(specs: &[FunctionSpec]) -> Vec<String> {
    specs
        .iter()
        .filter(|s| {
            s.triggers.iter().any(
                |t| matches!(t, Trigger::Mq { routing_keys, .. } if routing_keys.iter().any(|k| k == "#")),
            )
        })
        .map(|s| s.binary.clone())
        .collect()
}

/// Collects everything the services recorded about `order_id`.
pub async fn build(
    ctx: &Context,
    specs: &[FunctionSpec],
    order_id: &str,
) -> anyhow::Result<Timeline> {
    let bound = consumers_by_binding(specs);
    let recorder = catch_all(specs);
    let mut events: BTreeMap<String, EventLine> = BTreeMap::new();
    let blank = |event_id: String, event_type: String, occurred_at: DateTime<Utc>| EventLine {
        event_id,
        event_type,
        causation_id: None,
        detail: String::new(),
        occurred_at,
        trace_id: None,
        published_by: None,
        published_at: None,
        recorded_at: None,
        consumers: vec![],
    };
    for row in order::timeline_events(&ctx.pool, order_id).await? {
        let mut e = blank(row.event_id.to_string(), row.event_type, row.occurred_at);
        e.causation_id = Some(row.causation_id).filter(|c| !c.is_empty());
        e.trace_id = trace_id(&row.traceparent);
        e.detail = row.detail;
        e.recorded_at = Some(row.recorded_at);
        events.insert(e.event_id.clone(), e);
    }
    let mut inbox: Vec<InboxRow> = Vec::new();
    for schema in crate::registry::OUTBOX_SCHEMAS {
        for row in shared::db::outbox_for_order(&ctx.pool, schema, order_id).await? {
            let e = events.entry(row.event_id.to_string()).or_insert_with(|| {
                let mut e = blank(
                    row.event_id.to_string(),
                    row.event_type.clone(),
                    row.created_at,
                );
                e.causation_id = Some(row.causation_id.clone()).filter(|c| !c.is_empty());
                e
            });
            e.published_by = Some(shared::metrics::service_of_schema(schema).to_string());
            e.published_at = row.published_at;
        }
        inbox.extend(shared::db::inbox_for_order(&ctx.pool, schema, order_id).await?);
    }
    let letters = dead_letters(ctx, specs, order_id).await?;
    for row in &inbox {
        events.entry(row.event_id.to_string()).or_insert_with(|| {
            blank(
                row.event_id.to_string(),
                row.event_type.clone(),
                row.occurred_at.unwrap_or(row.processed_at),
            )
        });
    }
    for p in &letters {
        let occurred = p.state.dead_lettered_at.unwrap_or_else(Utc::now);
        events
            .entry(p.event_id.clone())
            .or_insert_with(|| blank(p.event_id.clone(), p.event_type.clone(), occurred));
    }
    for e in events.values_mut() {
        e.consumers = consumptions(e, &bound, &recorder, &inbox, &letters);
    }
    let events = causal_order(events.into_values().collect());
    let (status, reason) = match uuid::Uuid::parse_str(order_id) {
        Ok(id) => order::status_of(&ctx.pool, id)
            .await?
            .map_or((None, None), |(s, r)| (Some(s), r)),
        Err(_) => (None, None),
    };
    Ok(Timeline {
        order_id: order_id.to_string(),
        status,
        reason,
        trace_id: events.first().and_then(|e| e.trace_id.clone()),
        events,
    })
}

fn consumptions(
    e: &EventLine,
    bound: &[(String, Vec<String>)],
    recorder: &[String],
    inbox: &[InboxRow],
    letters: &[Parked],
) -> Vec<Consumption> {
    let mut functions: Vec<String> = bound
        .iter()
        .filter(|(_, keys)| {
            keys.iter()
                .any(|k| shared::topology::topic_matches(k, &e.event_type))
        })
        .map(|(f, _)| f.clone())
        .collect();
    let done: Vec<&InboxRow> = inbox
        .iter()
        .filter(|r| r.event_id.to_string() == e.event_id && !recorder.contains(&r.consumer))
        .collect();
    let parked: Vec<&Parked> = letters
        .iter()
        .filter(|p| p.event_id == e.event_id)
        .collect();
    for f in done
        .iter()
        .map(|r| &r.consumer)
        .chain(parked.iter().map(|p| &p.function))
    {
        if !functions.contains(f) {
            functions.push(f.clone());
        }
    }
    functions
        .into_iter()
        .map(|function| {
            let row = done.iter().find(|r| r.consumer == function);
            let letter = parked
                .iter()
                .find(|p| p.function == function)
                .map(|p| p.state.clone());
            let outcome = match (row, &letter) {
                (Some(_), _) => "processed",
                (None, Some(_)) => "parked",
                (None, None) => "pending",
            };
            Consumption {
                function,
                outcome,
                attempts: row.map(|r| r.attempts),
                duplicates: row.map_or(0, |r| (r.deliveries - 1).max(0)),
                processed_at: row.map(|r| r.processed_at),
                latency_ms: row.map(|r| (r.processed_at - e.occurred_at).num_milliseconds()),
                dead_letter: letter,
            }
        })
        .collect()
}

/// A dead letter about the order.
struct Parked {
    event_id: String,
    event_type: String,
    /// The function that parked it (or whose queue dead-lettered it).
    function: String,
    state: DeadLetterState,
}

/// Dead letters about the order. Peeked, not taken: the console's channel closes without
/// acknowledging, so they stay where they are.
async fn dead_letters(
    ctx: &Context,
    specs: &[FunctionSpec],
    order_id: &str,
) -> anyhow::Result<Vec<Parked>> {
    let queues = crate::template_queues(specs);
    let console = crate::dlq::Console::open(ctx, &queues).await?;
    let mut out = Vec::new();
    for (d, delivery) in &console.letters {
        let about_order = delivery
            .properties
            .correlation_id()
            .as_ref()
            .is_some_and(|c| c.as_str() == order_id);
        let Some(event_id) = d.message_id.clone().filter(|_| about_order) else {
            continue;
        };
        let function = d
            .headers
            .get(shared::topology::parked::FUNCTION)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                // Dead-lettered by the broker: the queue (or its shard stem) is named after
                // its function.
                let q = shared::topology::shard_stem(&d.original_queue);
                q.strip_prefix(ctx.names.prefix.as_str())
                    .unwrap_or(q)
                    .to_string()
            });
        out.push(Parked {
            event_id,
            event_type: d
                .event_type
                .clone()
                .unwrap_or_else(|| d.routing_key.clone()),
            function,
            state: DeadLetterState {
                id: d.id.clone(),
                queue: d.dead_letter_queue.clone(),
                reason: d.reason.clone(),
                attempts: d.attempts,
                dead_lettered_at: d
                    .dead_lettered_at_ms
                    .and_then(DateTime::<Utc>::from_timestamp_millis),
            },
        });
    }
    console.close().await;
    Ok(out)
}

/// The timeline as an operator reads it in a terminal.
pub fn render(t: &Timeline) -> String {
    let mut out = String::new();
    let state = match (&t.status, &t.reason) {
        (Some(s), Some(r)) => format!("{s} ({r})"),
        (Some(s), None) => s.clone(),
        (None, _) => "unknown to the order service".into(),
    };
    out.push_str(&format!(
        "order {}  {state}  trace {}  {} events\n",
        t.order_id,
        t.trace_id.as_deref().unwrap_or("-"),
        t.events.len()
    ));
    let index: BTreeMap<&str, usize> = t
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id.as_str(), i + 1))
        .collect();
    for (i, e) in t.events.iter().enumerate() {
        let cause = match e.causation_id.as_deref() {
            None => "first event".to_string(),
            Some(c) => index.get(c).map_or_else(
                || format!("caused by {c} (not recorded)"),
                |n| format!("caused by #{n}"),
            ),
        };
        let published = match (&e.published_by, e.published_at) {
            (Some(s), Some(at)) => format!(
                "published by {s} +{} ms",
                (at - e.occurred_at).num_milliseconds().max(0)
            ),
            (Some(s), None) => format!("NOT PUBLISHED yet (in the {s} outbox)"),
            (None, _) => "publisher unknown".into(),
        };
        let foreign_trace = match (&e.trace_id, &t.trace_id) {
            (Some(a), Some(b)) if a != b => format!("  OTHER TRACE {a}"),
            _ => String::new(),
        };
        let detail = if e.detail.is_empty() {
            String::new()
        } else {
            format!("  ({})", e.detail)
        };
        out.push_str(&format!(
            "\n#{} {} {}{detail}\n   event {}  {cause}  {published}{foreign_trace}\n",
            i + 1,
            e.occurred_at.format("%H:%M:%S%.3f"),
            e.event_type,
            e.event_id,
        ));
        if e.consumers.is_empty() {
            out.push_str("   (no function consumes it; recorded by the timeline only)\n");
        }
        for c in &e.consumers {
            let detail = match (c.outcome, &c.dead_letter) {
                ("processed", _) => {
                    let dups = if c.duplicates > 0 {
                        format!(", {} duplicate(s) skipped", c.duplicates)
                    } else {
                        String::new()
                    };
                    format!(
                        "attempt {}, {} ms after it occurred{dups}",
                        c.attempts.unwrap_or(1),
                        c.latency_ms.unwrap_or(0)
                    )
                }
                (_, Some(d)) => format!(
                    "dead letter {} in {} after {} attempt(s): {}",
                    d.id, d.queue, d.attempts, d.reason
                ),
                _ => "not consumed yet".into(),
            };
            out.push_str(&format!(
                "   -> {:<18} {:<9}  {detail}\n",
                c.function, c.outcome
            ));
        }
    }
    out
}
