//! Reading the broker's state for the operator commands (verify, chaos, bench, demo): queue
//! depths, unacknowledged counts and dead letters, through one helper so every command sees
//! the same thing.
//!
//! Ready counts come from a passive `queue.declare` (live). AMQP has no way to ask for the
//! unacknowledged count, so that comes from the management API (`RABBITMQ_MANAGEMENT_URL`,
//! default: the AMQP host on port 15672 with the same credentials; Amazon MQ serves it on
//! the broker's https console). The management API's figures are as old as the broker's
//! `collect_statistics_interval` (5 s by default): `settled` waits that long
//! (`ORDERFLOW_BROKER_STATS_MS`) with every figure at zero before it calls a system quiet.
//! Every queue is probed on a channel of its own: a missing queue closes the channel it was
//! asked on, and must not hide the queues after it.

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use shared::context::Context;
use shared::topology::parked;
use std::time::{Duration, Instant};

/// One queue as the broker reports it. `unacked` is `Err` with the reason when the
/// management API could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub ready: u64,
    pub unacked: Result<u64, String>,
}

/// A probe of one function queue; `Err` when it could not be declared passively (missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueProbe {
    pub queue: String,
    pub depth: Result<QueueDepth, String>,
}

/// What a dead-letter queue holds: the park reason of each message (`None` for a message the
/// broker dead-lettered itself, after the delivery limit), or `Err` when the queue is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterProbe {
    pub queue: String,
    pub letters: Result<Vec<Option<String>>, String>,
}

/// The management API of the broker behind `amqp_url`.
#[derive(Clone)]
pub struct Management {
    base: String,
    user: String,
    password: String,
    vhost: String,
    http: reqwest::Client,
}

impl Management {
    pub fn from_config(cfg: &shared::Config) -> anyhow::Result<Self> {
        let amqp = url::Url::parse(&cfg.amqp_url)?;
        let base = match std::env::var("RABBITMQ_MANAGEMENT_URL") {
            Ok(u) if !u.is_empty() => u.trim_end_matches('/').to_string(),
            _ => format!("http://{}:15672", amqp.host_str().unwrap_or("127.0.0.1")),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Ok(Management {
            base,
            user: decode(amqp.username()),
            password: decode(amqp.password().unwrap_or("")),
            vhost: cfg.vhost(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    /// One authenticated GET of `/api/<path>`.
    async fn get(&self, path: &str) -> Result<reqwest::Response, String> {
        self.http
            .get(format!("{}/api/{path}", self.base))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|e| format!("management API at {} unreachable: {e}", self.base))
    }

    /// Names of every queue of the vhost (`topology --prune` looks for retired shards
    /// among them instead of probing every possible name).
    pub async fn queue_names(&self) -> Result<Vec<String>, String> {
        let resp = self
            .get(&format!("queues/{}?columns=name", encode(&self.vhost)))
            .await?;
        if !resp.status().is_success() {
            return Err(format!(
                "management API answered {} listing queues",
                resp.status()
            ));
        }
        let body: Vec<serde_json::Value> = resp
            .json()
            .await
            .map_err(|e| format!("management API queue list unreadable: {e}"))?;
        Ok(body
            .iter()
            .filter_map(|q| q.get("name")?.as_str().map(str::to_string))
            .collect())
    }

    /// Whether an exchange exists (asked here rather than by a passive declare, which
    /// closes its channel with an error when it does not).
    pub async fn exchange_exists(&self, exchange: &str) -> Result<bool, String> {
        let resp = self
            .get(&format!(
                "exchanges/{}/{}",
                encode(&self.vhost),
                encode(exchange)
            ))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            s => Err(format!(
                "management API answered {s} for exchange {exchange}"
            )),
        }
    }

    /// `messages_unacknowledged` of one queue.
    pub async fn unacked(&self, queue: &str) -> Result<u64, String> {
        let resp = self
            .get(&format!("queues/{}/{}", encode(&self.vhost), encode(queue)))
            .await?;
        if !resp.status().is_success() {
            return Err(format!(
                "management API answered {} for queue {queue}",
                resp.status()
            ));
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("management API answer for {queue} unreadable: {e}"))?;
        // A queue the statistics collector has not reported on yet has no such field: that
        // is not zero, it is unknown.
        body.get("messages_unacknowledged")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("the broker has not reported statistics for {queue} yet"))
    }
}

/// A path segment of the management API (`/` is the default vhost, sent as `%2F`).
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A connection for probing; close it with `close`.
pub struct Probe {
    conn: Connection,
    management: Option<Management>,
    management_error: String,
}

impl Probe {
    pub async fn open(ctx: &Context) -> anyhow::Result<Self> {
        let conn = shared::publisher::connect(&ctx.config.amqp_url, "probe").await?;
        let (management, management_error) = match Management::from_config(&ctx.config) {
            Ok(m) => (Some(m), String::new()),
            Err(e) => (None, format!("no management API: {e}")),
        };
        Ok(Probe {
            conn,
            management,
            management_error,
        })
    }

    async fn passive(&self, queue: &str) -> Result<(Channel, u64), String> {
        let ch = self
            .conn
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match ch
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(state) => Ok((ch, u64::from(state.message_count()))),
            Err(e) => Err(format!("queue {queue} is missing: {e}")),
        }
    }

    /// Ready and unacknowledged counts of the given (prefixed) queues.
    pub async fn queues(&self, names: &[String]) -> Vec<QueueProbe> {
        let mut out = Vec::with_capacity(names.len());
        for q in names {
            let depth = match self.passive(q).await {
                Ok((ch, ready)) => {
                    let _ = ch.close(200, "probed".into()).await;
                    let unacked = match &self.management {
                        Some(m) => m.unacked(q).await,
                        None => Err(self.management_error.clone()),
                    };
                    Ok(QueueDepth { ready, unacked })
                }
                Err(e) => Err(e),
            };
            out.push(QueueProbe {
                queue: q.clone(),
                depth,
            });
        }
        out
    }

    /// Every message of the given (prefixed) dead-letter queues, peeked without being
    /// taken: the channel is closed unacknowledged, which puts them all back.
    pub async fn dead_letters(&self, names: &[String]) -> Vec<DeadLetterProbe> {
        let mut out = Vec::with_capacity(names.len());
        for q in names {
            let letters = match self.passive(q).await {
                Ok((ch, n)) => {
                    let mut reasons = Vec::new();
                    for _ in 0..n {
                        match ch
                            .basic_get(q.as_str().into(), BasicGetOptions::default())
                            .await
                        {
                            Ok(Some(msg)) => reasons.push(
                                msg.delivery.properties.headers().as_ref().and_then(|h| {
                                    h.inner()
                                        .iter()
                                        .find(|(k, _)| k.as_str() == parked::REASON)
                                        .map(|(_, v)| reason_text(v))
                                }),
                            ),
                            Ok(None) => break,
                            Err(e) => {
                                reasons.clear();
                                tracing::warn!(queue = %q, error = %e, "dead-letter peek failed");
                                break;
                            }
                        }
                    }
                    let _ = ch.close(200, "peeked".into()).await;
                    Ok(reasons)
                }
                Err(e) => Err(e),
            };
            out.push(DeadLetterProbe {
                queue: q.clone(),
                letters,
            });
        }
        out
    }

    pub async fn close(self) {
        let _ = self.conn.close(200, "probe done".into()).await;
    }
}

fn reason_text(v: &lapin::types::AMQPValue) -> String {
    match v {
        lapin::types::AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into(),
        other => format!("{other:?}"),
    }
}

/// The prefixed function queues and dead-letter queues of the template's queue names.
pub fn queue_names(ctx: &Context, queues: &[String]) -> (Vec<String>, Vec<String>) {
    (
        queues.iter().map(|q| ctx.names.queue(q)).collect(),
        queues
            .iter()
            .map(|q| ctx.names.dead_letter_queue(q))
            .collect(),
    )
}

/// What still moves: messages ready or unacknowledged in any function queue (a queue that
/// cannot be read counts as busy), plus unpublished outbox rows.
pub async fn busy(ctx: &Context, queues: &[String]) -> anyhow::Result<u64> {
    let probe = Probe::open(ctx).await?;
    let (names, _) = queue_names(ctx, queues);
    let states = probe.queues(&names).await;
    probe.close().await;
    let mut busy: u64 = states
        .iter()
        .map(|p| match &p.depth {
            Ok(d) => d.ready + d.unacked.clone().unwrap_or(1),
            Err(_) => 1,
        })
        .sum();
    for schema in crate::registry::OUTBOX_SCHEMAS {
        busy += shared::db::outbox_backlog(&ctx.pool, schema).await?.0 as u64;
    }
    Ok(busy)
}

/// How stale the management API's counts may be (`ORDERFLOW_BROKER_STATS_MS`, default
/// 10 s: RabbitMQ's default quorum tick plus statistics interval).
pub fn stats_interval() -> Duration {
    std::env::var("ORDERFLOW_BROKER_STATS_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// Waits until nothing is ready, unacknowledged or unpublished, and stays so for longer than
/// the management API's statistics interval (so an in-flight batch cannot read as settled).
pub async fn settled(ctx: &Context, queues: &[String], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let window = stats_interval() + Duration::from_millis(200);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let busy = busy(ctx, queues).await?;
        let now = Instant::now();
        if busy == 0 {
            let since = *quiet_since.get_or_insert(now);
            if now.duration_since(since) >= window {
                return Ok(());
            }
        } else {
            quiet_since = None;
        }
        anyhow::ensure!(
            now < deadline,
            "the system did not settle within {limit:?} ({busy} messages or outbox rows still moving)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
