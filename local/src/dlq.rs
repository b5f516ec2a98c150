//! `orderflow dlq`: the dead-letter console. Lists, shows, replays and discards what sits in
//! the dead-letter queues (messages parked by a function with their reason, and messages
//! the broker dead-lettered after the delivery limit), with an audit record of every
//! replay and discard. Replaying is safe: every consumer skips what it already did.

use anyhow::Context as _;
use base64::Engine as _;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use shared::context::Context;
use shared::topology::parked;
use std::time::Duration;

/// One dead letter as the console presents it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Stable short id (hash of the dead-letter queue, message id, body and parking time).
    pub id: String,
    pub dead_letter_queue: String,
    pub original_queue: String,
    pub routing_key: String,
    pub event_type: Option<String>,
    pub message_id: Option<String>,
    pub reason: String,
    pub attempts: i64,
    /// Milliseconds since the epoch when it was dead-lettered (when known).
    pub dead_lettered_at_ms: Option<i64>,
    pub content_type: Option<String>,
    pub headers: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Original queue (template name, unprefixed).
    pub queue: Option<String>,
    pub event_type: Option<String>,
    /// Substring of the reason.
    pub reason: Option<String>,
    pub older_than: Option<Duration>,
}

impl Filter {
    fn matches(&self, d: &DeadLetter, names: &shared::topology::Names) -> bool {
        let now = chrono::Utc::now().timestamp_millis();
        self.queue
            .as_ref()
            // A function's name also matches its shards' queues (`inventory-reserve.2`).
            .is_none_or(|q| {
                names.queue(q) == d.original_queue
                    || names.queue(q) == shared::topology::shard_stem(&d.original_queue)
            })
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| d.event_type.as_deref() == Some(t.as_str()))
            && self
                .reason
                .as_ref()
                .is_none_or(|r| d.reason.contains(r.as_str()))
            && self.older_than.is_none_or(|age| {
                d.dead_lettered_at_ms
                    .is_some_and(|at| now - at >= age.as_millis() as i64)
            })
    }
}

/// `10s`, `5m`, `2h`, `1d`, or plain seconds.
pub fn parse_age(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.trim().len()),
    );
    let n: u64 = num
        .parse()
        .with_context(|| format!("bad age {s:?} (e.g. 30s, 10m, 2h, 1d)"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => anyhow::bail!("bad age unit in {s:?} (s, m, h, d)"),
    };
    Ok(Duration::from_secs(n * secs))
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn int(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::Timestamp(t) => Some(*t as i64),
        AMQPValue::LongString(_) => text(v)?.parse().ok(),
        _ => None,
    }
}

fn json_of(v: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match v {
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            Value::String(text(v).unwrap_or_default())
        }
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(json_of).collect()),
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), json_of(v)))
                .collect(),
        ),
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::Void => Value::Null,
        other => int(other)
            .map(Value::from)
            .unwrap_or_else(|| Value::String(format!("{other:?}"))),
    }
}

/// Reads a dead-letter delivery: our parking headers first, the broker's `x-death` else.
fn describe(dlq: &str, d: &Delivery) -> DeadLetter {
    let props = &d.properties;
    let headers = props.headers().clone().unwrap_or_default();
    let get = |k: &str| headers.inner().get(k);
    let death = get("x-death").and_then(|v| match v {
        AMQPValue::FieldArray(a) => a.as_slice().first().and_then(|f| match f {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    });
    let death_get = |k: &str| death.as_ref().and_then(|t| t.inner().get(k).cloned());
    let (reason, original_queue, routing_key, attempts, at) =
        match get(parked::REASON).and_then(text) {
            Some(reason) => (
                reason,
                get(parked::ORIGINAL_QUEUE)
                    .and_then(text)
                    .unwrap_or_default(),
                get(parked::ORIGINAL_ROUTING_KEY)
                    .and_then(text)
                    .unwrap_or_default(),
                get(parked::ATTEMPTS).and_then(int).unwrap_or(1),
                get(parked::PARKED_AT).and_then(int),
            ),
            None => (
                format!(
                    "dead-lettered by the broker: {}",
                    death_get("reason")
                        .as_ref()
                        .and_then(text)
                        .unwrap_or_else(|| "unknown".into())
                ),
                death_get("queue")
                    .as_ref()
                    .and_then(text)
                    .unwrap_or_default(),
                match death_get("routing-keys") {
                    Some(AMQPValue::FieldArray(a)) => {
                        a.as_slice().first().and_then(text).unwrap_or_default()
                    }
                    _ => String::new(),
                },
                get("x-delivery-count")
                    .and_then(int)
                    .map(|c| c + 1)
                    .or_else(|| death_get("count").as_ref().and_then(int))
                    .unwrap_or(0),
                death_get("time")
                    .as_ref()
                    .and_then(int)
                    .map(|secs| secs * 1000),
            ),
        };
    let message_id = props.message_id().as_ref().map(|m| m.as_str().to_string());
    let mut h = Sha256::new();
    h.update(dlq.as_bytes());
    h.update(message_id.as_deref().unwrap_or("").as_bytes());
    h.update(&d.data);
    h.update(at.unwrap_or(0).to_le_bytes());
    DeadLetter {
        id: hex::encode(&h.finalize()[..6]),
        dead_letter_queue: dlq.to_string(),
        original_queue,
        routing_key,
        event_type: props.kind().as_ref().map(|k| k.as_str().to_string()),
        message_id,
        reason,
        attempts,
        dead_lettered_at_ms: at,
        content_type: props
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_string()),
        headers: headers
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), json_of(v)))
            .collect(),
        body: d.data.clone(),
    }
}

/// A console session: one channel holding every dead letter it read, unacknowledged, until
/// it acts on some; closing it returns the rest to their queues untouched.
pub struct Console {
    conn: lapin::Connection,
    ch: Channel,
    pub letters: Vec<(DeadLetter, Delivery)>,
}

impl Console {
    pub async fn open(ctx: &Context, queues: &[String]) -> anyhow::Result<Self> {
        let conn = shared::publisher::connect(&ctx.config.amqp_url, "dlq-console").await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut letters = Vec::new();
        for q in queues {
            let dlq = ctx.names.dead_letter_queue(q);
            while let Some(msg) = ch
                .basic_get(dlq.as_str().into(), BasicGetOptions::default())
                .await?
            {
                letters.push((describe(&dlq, &msg.delivery), msg.delivery));
            }
        }
        letters.sort_by_key(|(d, _)| d.dead_lettered_at_ms.unwrap_or(0));
        Ok(Console { conn, ch, letters })
    }

    pub fn find(&self, id: &str) -> anyhow::Result<usize> {
        self.letters
            .iter()
            .position(|(d, _)| d.id == id)
            .with_context(|| format!("no dead letter with id {id:?} (see `orderflow dlq list`)"))
    }

    /// Republishes one dead letter to the events exchange with its original routing key
    /// and properties (minus the dead-lettering headers), confirmed, then removes it.
    pub async fn replay(&self, ctx: &Context, index: usize) -> anyhow::Result<()> {
        let (d, delivery) = &self.letters[index];
        anyhow::ensure!(
            !d.routing_key.is_empty(),
            "dead letter {} has no original routing key to replay to",
            d.id
        );
        let mut headers = FieldTable::default();
        if let Some(h) = delivery.properties.headers() {
            for (k, v) in h.inner() {
                if !k.as_str().starts_with("x-") {
                    headers.insert(k.clone(), v.clone());
                }
            }
        }
        let props = delivery.properties.clone().with_headers(headers);
        let confirm = self
            .ch
            .basic_publish(
                ctx.names.events_exchange().as_str().into(),
                d.routing_key.as_str().into(),
                // Acked but dropped otherwise, and the dead letter removed below: lost.
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                props,
            )
            .await?
            .await?;
        anyhow::ensure!(
            confirm.is_ack(),
            "the broker refused the replay of {}",
            d.id
        );
        anyhow::ensure!(
            confirm.take_message().is_none(),
            "no queue is bound for routing key {:?}: dead letter {} was not replayed and stays",
            d.routing_key,
            d.id
        );
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    pub async fn discard(&self, index: usize) -> anyhow::Result<()> {
        self.letters[index]
            .1
            .ack(BasicAckOptions::default())
            .await?;
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.ch.close(200, "console done".into()).await;
        let _ = self.conn.close(200, "console done".into()).await;
    }
}

/// The audit trail of operator actions (the runner's own `ops` schema).
pub async fn audit(
    ctx: &Context,
    action: &str,
    d: &DeadLetter,
    dry_run: bool,
) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS ops;
         CREATE TABLE IF NOT EXISTS ops.dlq_audit (
             id              bigserial   PRIMARY KEY,
             at              timestamptz NOT NULL DEFAULT now(),
             action          text        NOT NULL,
             dead_letter_id  text        NOT NULL,
             dead_letter_queue text      NOT NULL,
             routing_key     text        NOT NULL,
             message_id      text,
             reason          text        NOT NULL,
             dry_run         boolean     NOT NULL,
             operator        text        NOT NULL
         );",
    )
    .execute(&ctx.pool)
    .await?;
    sqlx::query(
        "INSERT INTO ops.dlq_audit (action, dead_letter_id, dead_letter_queue, routing_key, message_id, reason, dry_run, operator)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(action)
    .bind(&d.id)
    .bind(&d.dead_letter_queue)
    .bind(&d.routing_key)
    .bind(&d.message_id)
    .bind(&d.reason)
    .bind(dry_run)
    .bind(std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
    .execute(&ctx.pool)
    .await?;
    Ok(())
}

/// The audit records, newest first.
pub async fn audit_log(ctx: &Context) -> anyhow::Result<Vec<(String, String, String, bool)>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('ops.dlq_audit') IS NOT NULL")
        .fetch_one(&ctx.pool)
        .await?;
    if !exists {
        return Ok(vec![]);
    }
    Ok(sqlx::query_as(
        "SELECT action, dead_letter_id, routing_key, dry_run FROM ops.dlq_audit ORDER BY id DESC",
    )
    .fetch_all(&ctx.pool)
    .await?)
}

/// The payload as JSON whatever its encoding, or the raw bytes when it cannot be decoded.
pub fn payload_view(d: &DeadLetter) -> serde_json::Value {
    let decoded = shared::Encoding::from_content_type(d.content_type.as_deref())
        .ok()
        .and_then(|enc| shared::Envelope::decode(&d.body, enc).ok());
    match decoded {
        Some(env) => serde_json::json!({"decoded": env}),
        None => serde_json::json!({
            "undecodable": true,
            "bytes": d.body.len(),
            "hex": hex::encode(&d.body[..d.body.len().min(512)]),
            "base64": base64::engine::general_purpose::STANDARD.encode(&d.body),
        }),
    }
}

pub fn list_line(d: &DeadLetter) -> String {
    let age = d
        .dead_lettered_at_ms
        .map(|at| {
            format!(
                "{}s",
                (chrono::Utc::now().timestamp_millis() - at).max(0) / 1000
            )
        })
        .unwrap_or_else(|| "?".into());
    format!(
        "{}  {:<28} {:<18} attempts={:<3} age={:<6} {}",
        d.id,
        d.original_queue,
        d.event_type
            .as_deref()
            .unwrap_or(if d.routing_key.is_empty() {
                "?"
            } else {
                &d.routing_key
            }),
        d.attempts,
        age,
        d.reason
    )
}

/// Selects by ids (or every letter matching the filter when `all`).
pub fn select(
    console: &Console,
    ids: &[String],
    all: bool,
    filter: &Filter,
    names: &shared::topology::Names,
) -> anyhow::Result<Vec<usize>> {
    if all {
        return Ok((0..console.letters.len())
            .filter(|&i| filter.matches(&console.letters[i].0, names))
            .collect());
    }
    anyhow::ensure!(!ids.is_empty(), "name dead letter ids, or --all");
    ids.iter().map(|id| console.find(id)).collect()
}

pub fn matching<'a>(
    console: &'a Console,
    filter: &Filter,
    names: &shared::topology::Names,
) -> Vec<&'a DeadLetter> {
    console
        .letters
        .iter()
        .map(|(d, _)| d)
        .filter(|d| filter.matches(d, names))
        .collect()
}
