//! The bench's client: places orders over HTTP (open loop on a schedule, or closed loop),
//! retries what the server answers with 5xx or not at all while recording every retry, and
//! watches orders become final.
//!
//! Watching costs no request per order: one query every `POLL` asks the database which of
//! the accepted orders not yet seen final are final now, and stamps each with the moment the
//! answer came back. A client-side latency is therefore late by at most one poll interval
//! plus one query (the report gives the query times), never early.

use super::stats::OrderRecord;
use indicatif::ProgressBar;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, PgPool};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often the client asks which orders are final.
pub const POLL: Duration = Duration::from_millis(50);
/// How long one order's attempts may go on (5xx and transport errors are retried).
pub const RETRY_FOR: Duration = Duration::from_secs(120);

/// One batch of orders to place.
#[derive(Clone)]
pub struct Load {
    pub base: String,
    /// Order numbers (they pick product, quantity and card, and make the idempotency key).
    pub first: usize,
    pub count: usize,
    /// Open loop at this many orders per second; closed loop when None.
    pub rate: Option<f64>,
    /// Closed loop: clients; open loop: most requests in flight (a send past it waits, and
    /// its wait counts in its latency).
    pub concurrency: usize,
    /// Bearer tokens, used in turn (none for the baseline, whose stand-in does not ask).
    pub tokens: Vec<String>,
    pub key_prefix: String,
}

/// The body of order `i`: one of four products, one to three units, one card in twenty
/// declined.
pub fn order_body(i: usize) -> Value {
    let product = ["sku-coffee", "sku-mug", "sku-grinder", "sku-kettle"][i % 4];
    json!({"items": [{"product_id": product, "quantity": 1 + i % 3}], "payment_token": card(i)})
}

pub fn card(i: usize) -> &'static str {
    if i % 20 == 7 {
        "tok_chargeDeclined"
    } else {
        "tok_visa"
    }
}

/// How the final-state watcher did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Watch {
    pub poll_ms: f64,
    /// Queries run against the run's database (the bench subtracts them from its commits).
    pub queries: u64,
    pub query_ms_mean: f64,
    pub query_ms_max: f64,
}

pub struct Outcome {
    pub records: Vec<OrderRecord>,
    /// Seconds since the start at which waiting stopped (the last final, or the limit).
    pub stopped_at: f64,
    pub watch: Watch,
    /// Order numbers accepted (for the declined share of the mix).
    pub accepted: Vec<usize>,
}

struct Shared {
    records: Vec<OrderRecord>,
    /// Accepted orders not yet seen final: id -> position in `records`.
    pending: HashMap<Uuid, usize>,
    accepted: Vec<usize>,
}

/// Places `load` from `t0` and watches until every accepted order is final or `limit`
/// after the last send.
pub async fn run(
    http: &reqwest::Client,
    watcher: &Watcher,
    load: &Load,
    t0: Instant,
    limit: Duration,
    bars: (&ProgressBar, &ProgressBar),
) -> anyhow::Result<Outcome> {
    let shared = Arc::new(Mutex::new(Shared {
        records: vec![OrderRecord::default(); load.count],
        pending: HashMap::new(),
        accepted: Vec::new(),
    }));
    let placing = Arc::new(AtomicBool::new(true));
    let watching = watcher.watch(shared.clone(), placing.clone(), t0, limit, bars.1);
    let placed = place(http, load, t0, shared.clone(), bars.0);
    let (placed, watch) = futures::future::join(
        async {
            let r = placed.await;
            placing.store(false, Ordering::SeqCst);
            r
        },
        watching,
    )
    .await;
    placed?;
    let (watch, stopped_at) = watch?;
    let mut s = shared
        .lock()
        .map_err(|_| anyhow::anyhow!("client state poisoned"))?;
    Ok(Outcome {
        records: std::mem::take(&mut s.records),
        stopped_at,
        watch,
        accepted: std::mem::take(&mut s.accepted),
    })
}

async fn place(
    http: &reqwest::Client,
    load: &Load,
    t0: Instant,
    shared: Arc<Mutex<Shared>>,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let one = |slot: usize| {
        let (http, load, shared, bar) = (http.clone(), load.clone(), shared.clone(), bar.clone());
        async move {
            let scheduled = load.rate.map(|r| slot as f64 / r);
            let (record, id) = place_one(&http, &load, load.first + slot, t0, scheduled).await;
            if let Ok(mut s) = shared.lock() {
                if let Some(id) = id {
                    s.pending.insert(id, slot);
                    s.accepted.push(load.first + slot);
                }
                s.records[slot] = record;
            }
            bar.inc(1);
        }
    };
    let width = load.concurrency.max(1);
    match load.rate.filter(|r| *r > 0.0) {
        Some(rate) => {
            // Open loop: each order leaves at its time whatever became of the earlier ones.
            let gate = Arc::new(tokio::sync::Semaphore::new(width));
            let mut tasks = tokio::task::JoinSet::new();
            for slot in 0..load.count {
                tokio::time::sleep_until((t0 + Duration::from_secs_f64(slot as f64 / rate)).into())
                    .await;
                let permit = gate.clone().acquire_owned().await?;
                let job = one(slot);
                tasks.spawn(async move {
                    job.await;
                    drop(permit);
                });
            }
            while let Some(done) = tasks.join_next().await {
                done?;
            }
        }
        None => {
            let next = AtomicUsize::new(0);
            futures::future::join_all((0..width).map(|_| async {
                loop {
                    let slot = next.fetch_add(1, Ordering::SeqCst);
                    if slot >= load.count {
                        return;
                    }
                    one(slot).await;
                }
            }))
            .await;
        }
    }
    Ok(())
}

/// One order, retried through 5xx answers and transport errors with its idempotency key
/// (so a retry never creates a second order), every retry recorded.
async fn place_one(
    http: &reqwest::Client,
    load: &Load,
    i: usize,
    t0: Instant,
    scheduled: Option<f64>,
) -> (OrderRecord, Option<Uuid>) {
    let started = Instant::now();
    let mut record = OrderRecord {
        scheduled,
        first_send: t0.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let body = order_body(i);
    let key = format!("{}-{i}", load.key_prefix);
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = started.elapsed();
        let mut req = http
            .post(format!("{}/orders", load.base))
            .header("idempotency-key", &key)
            .json(&body);
        if !load.tokens.is_empty() {
            req = req.bearer_auth(&load.tokens[i % load.tokens.len()]);
        }
        let status = match req.send().await {
            Ok(r) if r.status().as_u16() == 202 => {
                let id = r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|b| b["order_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()));
                record.retry_secs = attempt.as_secs_f64();
                match id {
                    Some(id) => {
                        record.accepted = Some(t0.elapsed().as_secs_f64());
                        return (record, Some(id));
                    }
                    None => {
                        record.error = Some("202 without an order_id".into());
                        return (record, None);
                    }
                }
            }
            Ok(r) if r.status().is_server_error() => {
                // A refusal by admission control says when to come back: a client that
                // came back sooner would only be refused again.
                // Each client adds up to half again at random, as well-behaved clients do,
                // so that a crowd refused together does not come back together.
                if let Some(after) = retry_after(&r) {
                    let spread = after.mul_f64(rand::random::<f64>() * 0.5);
                    delay = delay.max(after + spread);
                }
                r.status().as_u16().to_string()
            }
            Ok(r) => {
                record.retry_secs = attempt.as_secs_f64();
                record.error = Some(r.status().as_u16().to_string());
                return (record, None);
            }
            Err(_) => "transport".to_string(),
        };
        if started.elapsed() >= RETRY_FOR {
            record.retry_secs = attempt.as_secs_f64();
            record.error = Some(status);
            return (record, None);
        }
        record.retried.push(status);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// The `Retry-After` of an answer, in whole seconds (the only form the front door sends),
/// capped so that one odd header cannot stall an order for the rest of the run.
fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = r
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(30)))
}

/// Asks the run's database which accepted orders are final, one query per poll.
pub struct Watcher {
    pub pool: PgPool,
    /// `orders.orders`, or the baseline's `baseline.orders`.
    pub table: &'static str,
    /// Statements run, and connections opened (sqlx's connection set-up commits one
    /// transaction of its own, measured): the bench subtracts both from the run's commits.
    pub queries: Arc<AtomicUsize>,
}

impl Watcher {
    pub fn new(database_url: &str, table: &'static str) -> anyhow::Result<Self> {
        let queries = Arc::new(AtomicUsize::new(0));
        let opts: sqlx::postgres::PgConnectOptions = database_url.parse()?;
        let counted = queries.clone();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |_, _| {
                let counted = counted.clone();
                Box::pin(async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            })
            .connect_lazy_with(opts);
        Ok(Watcher {
            pool,
            table,
            queries,
        })
    }

    /// Counted: the bench takes its own statements out of the run's commit count.
    pub async fn unpublished(&self) -> anyhow::Result<i64> {
        let n = super::probe::unpublished(&self.pool).await?;
        self.queries
            .fetch_add(crate::registry::OUTBOX_SCHEMAS.len(), Ordering::SeqCst);
        Ok(n)
    }

    async fn watch(
        &self,
        shared: Arc<Mutex<Shared>>,
        placing: Arc<AtomicBool>,
        t0: Instant,
        limit: Duration,
        bar: &ProgressBar,
    ) -> anyhow::Result<(Watch, f64)> {
        let sql = format!(
            "SELECT order_id FROM {} WHERE order_id = ANY($1) AND finalized_at IS NOT NULL",
            self.table
        );
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut queries, mut total_ms, mut max_ms) = (0u64, 0.0f64, 0.0f64);
        let mut placed_at: Option<Instant> = None;
        let mut last_final = 0.0f64;
        loop {
            tick.tick().await;
            let still_placing = placing.load(Ordering::SeqCst);
            if !still_placing && placed_at.is_none() {
                placed_at = Some(Instant::now());
            }
            let ids: Vec<Uuid> = shared
                .lock()
                .map(|s| s.pending.keys().copied().collect())
                .unwrap_or_default();
            if ids.is_empty() {
                if !still_placing {
                    break;
                }
                continue;
            }
            let asked = Instant::now();
            let finals: Vec<Uuid> = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
                .bind(&ids)
                .fetch_all(&self.pool)
                .await?;
            let seen = t0.elapsed().as_secs_f64();
            let took = asked.elapsed().as_secs_f64() * 1000.0;
            queries += 1;
            self.queries.fetch_add(1, Ordering::SeqCst);
            total_ms += took;
            max_ms = max_ms.max(took);
            if let Ok(mut s) = shared.lock() {
                for id in finals {
                    if let Some(slot) = s.pending.remove(&id) {
                        s.records[slot].final_seen = Some(seen);
                        last_final = seen;
                        bar.inc(1);
                    }
                }
            }
            if placed_at.is_some_and(|p| p.elapsed() > limit) {
                // Gave up: the window ends here, and the report says it is incomplete.
                last_final = t0.elapsed().as_secs_f64();
                break;
            }
        }
        Ok((
            Watch {
                poll_ms: POLL.as_secs_f64() * 1000.0,
                queries,
                query_ms_mean: if queries == 0 {
                    0.0
                } else {
                    total_ms / queries as f64
                },
                query_ms_max: max_ms,
            },
            last_final,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_order_in_twenty_has_a_declined_card() {
        let declined = (0..300).filter(|i| card(*i) != "tok_visa").count();
        assert_eq!(declined, 15);
        assert_eq!(order_body(7)["payment_token"], "tok_chargeDeclined");
        assert_eq!(order_body(5)["items"][0]["quantity"], 3);
    }
}
