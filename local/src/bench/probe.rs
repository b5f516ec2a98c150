//! What the bench reads from outside the run, one adapter per source: `/proc` (CPU and
//! memory by process), Postgres (settings, the commit counter, inbox and outbox rows, the
//! server-side latencies), RabbitMQ's management API (version, publish and delivery
//! counters of the run's exchanges and queues) and the runner's `/metrics`. Each read
//! returns plain data; `stats` does the arithmetic.

use super::stats::{ProcStat, parse_stat};
use anyhow::Context as _;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};

/// Every process of the machine, as `/proc` shows it now.
pub fn procs() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            parse_stat(
                pid,
                &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
            )
        })
        .collect()
}

/// Linux reports `/proc` times in USER_HZ, 100 on every mainstream architecture.
pub const TICKS_PER_SEC: f64 = 100.0;

/// Resident memory and its high-water mark of a process, in bytes.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some((kb("VmRSS:") * 1024, kb("VmHWM:") * 1024))
}

/// A connection to the server's `postgres` database: statistics of the run's database are
/// read from outside it, so reading them adds nothing to them.
pub async fn admin(db_url: &url::Url) -> anyhow::Result<PgConnection> {
    let mut admin = db_url.clone();
    admin.set_path("/postgres");
    PgConnection::connect(admin.as_str())
        .await
        .with_context(|| format!("connecting to {}", shared::config::redact(admin.as_str())))
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PgSettings {
    pub version: String,
    pub fsync: String,
    pub synchronous_commit: String,
}

pub async fn pg_settings(conn: &mut PgConnection) -> anyhow::Result<PgSettings> {
    let mut show = async |name: &str| -> anyhow::Result<String> {
        Ok(sqlx::query_scalar(AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut *conn)
            .await?)
    };
    Ok(PgSettings {
        version: show("server_version").await?,
        fsync: show("fsync").await?,
        synchronous_commit: show("synchronous_commit").await?,
    })
}

/// Transactions committed in `db` (read-only ones included: each autocommit statement is
/// one), as the statistics system has been told so far.
pub async fn commits(conn: &mut PgConnection, db: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(db)
            .fetch_optional(conn)
            .await?
            .unwrap_or(0),
    )
}

/// Backends connected to `db`. A backend reports its last statistics when it exits, so the
/// commit counter is complete once this is zero.
pub async fn backends(conn: &mut PgConnection, db: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(db)
            .fetch_one(conn)
            .await?,
    )
}

/// Inbox and outbox rows of every service.
pub async fn rows(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    let (mut inbox, mut outbox) = (0, 0);
    for schema in crate::registry::OUTBOX_SCHEMAS {
        let (i, o): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT (SELECT count(*) FROM {schema}.inbox), (SELECT count(*) FROM {schema}.outbox)"
        )))
        .fetch_one(pool)
        .await?;
        inbox += i;
        outbox += o;
    }
    Ok((inbox, outbox))
}

/// Messages handled (inbox rows, stamped at their transaction's start) between two instants.
pub async fn handled_between(
    pool: &PgPool,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<i64> {
    let mut n = 0;
    for schema in crate::registry::OUTBOX_SCHEMAS {
        let c: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.inbox WHERE processed_at BETWEEN $1 AND $2"
        )))
        .bind(from)
        .bind(to)
        .fetch_one(pool)
        .await?;
        n += c;
    }
    Ok(n)
}

/// Server-side accept-to-final of every final order of `table`: `created_at` (the creating
/// transaction's start) to `finalized_at` (the deciding transaction's start), in ms.
pub async fn server_latencies(pool: &PgPool, table: &str) -> anyhow::Result<Vec<f64>> {
    Ok(sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT (EXTRACT(EPOCH FROM finalized_at - created_at) * 1000)::float8
         FROM {table} WHERE finalized_at IS NOT NULL"
    )))
    .fetch_all(pool)
    .await?)
}

/// How the run's orders ended, by status and reason (`CONFIRMED`, `CANCELLED out_of_stock`,
/// `PENDING`...): the flow's own table only, the baseline decides nothing.
pub async fn outcomes(pool: &PgPool) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status || coalesce(' ' || reason, ''), count(*) FROM orders.orders GROUP BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// Unpublished outbox rows of every service.
pub async fn unpublished(pool: &PgPool) -> anyhow::Result<i64> {
    let mut n = 0;
    for schema in crate::registry::OUTBOX_SCHEMAS {
        n += shared::db::outbox_backlog(pool, schema).await?.0;
    }
    Ok(n)
}

/// RabbitMQ's management API, at `RABBITMQ_MANAGEMENT_URL` or port 15672 of the AMQP host
/// with the AMQP credentials.
pub struct Management {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
    vhost: String,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct BrokerInfo {
    pub rabbitmq_version: String,
    pub erlang_version: String,
}

/// Counters of the run's own exchanges and queues (its prefix), since they were declared.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BrokerCounts {
    /// Messages published into the run's exchanges (every publish is confirmed).
    pub publishes: u64,
    /// Deliveries from the run's queues to consumers, redeliveries included.
    pub deliveries: u64,
    pub redeliveries: u64,
}

impl Management {
    pub fn new(cfg: &shared::Config) -> anyhow::Result<Self> {
        let amqp = url::Url::parse(&cfg.amqp_url)?;
        let base = std::env::var("RABBITMQ_MANAGEMENT_URL")
            .unwrap_or_else(|_| format!("http://{}:15672", amqp.host_str().unwrap_or("127.0.0.1")));
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Ok(Management {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            user: decode(amqp.username()),
            password: decode(amqp.password().unwrap_or("")),
            vhost: cfg.vhost(),
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .with_context(|| format!("RabbitMQ management API at {url}"))?;
        anyhow::ensure!(
            resp.status().is_success(),
            "{url} answered {}",
            resp.status()
        );
        Ok(resp.json().await?)
    }

    pub async fn info(&self) -> anyhow::Result<BrokerInfo> {
        let v = self.get("/api/overview").await?;
        let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
        Ok(BrokerInfo {
            rabbitmq_version: s("rabbitmq_version"),
            erlang_version: s("erlang_version"),
        })
    }

    /// The broker updates these every `collect_statistics_interval` (5 s by default).
    pub async fn counts(&self, prefix: &str) -> anyhow::Result<BrokerCounts> {
        let vhost: String = url::form_urlencoded::byte_serialize(self.vhost.as_bytes()).collect();
        let queues = self
            .get(&format!("/api/queues/{vhost}?columns=name,message_stats"))
            .await?;
        let exchanges = self
            .get(&format!(
                "/api/exchanges/{vhost}?columns=name,message_stats"
            ))
            .await?;
        Ok(broker_counts(&queues, &exchanges, prefix))
    }
}

/// Whether the broker's counters have reached what the runner counted (it delivers to the
/// runner's functions and receives its publishes, so it can only lag behind, not fall short).
pub fn caught_up(c: &BrokerCounts, delivered: f64, published: f64) -> bool {
    c.deliveries as f64 >= delivered && c.publishes as f64 >= published
}

/// Adds up the counters of the objects named with `prefix` in the management API's answers.
pub fn broker_counts(
    queues: &serde_json::Value,
    exchanges: &serde_json::Value,
    prefix: &str,
) -> BrokerCounts {
    let sum = |list: &serde_json::Value, field: &str| -> u64 {
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .filter_map(|o| o["message_stats"][field].as_u64())
            .sum()
    };
    BrokerCounts {
        publishes: sum(exchanges, "publish_in"),
        deliveries: sum(queues, "deliver_get"),
        redeliveries: sum(queues, "redeliver"),
    }
}

/// Messages ready in these (prefixed) queues, read with passive declares: exact and
/// immediate, unlike the management API's figures.
pub async fn ready(amqp_url: &str, queues: &[String]) -> anyhow::Result<u64> {
    use lapin::options::QueueDeclareOptions;
    let conn = shared::publisher::connect(amqp_url, "bench").await?;
    let ch = conn.create_channel().await?;
    let mut total = 0;
    for q in queues {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let state = ch
            .queue_declare(
                q.as_str().into(),
                passive,
                lapin::types::FieldTable::default(),
            )
            .await?;
        total += u64::from(state.message_count());
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(total)
}

/// The runner's `/metrics` text, from its metrics address (empty when it does not answer;
/// the report then shows zero for the runner's own counters).
pub async fn scrape(http: &reqwest::Client, metrics_base: &str) -> String {
    match http.get(format!("{metrics_base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn broker_counters_of_other_runs_are_left_out() {
        let queues = json!([
            {"name": "bench1.order-saga", "message_stats": {"deliver_get": 600, "redeliver": 2}},
            {"name": "bench1.order-saga.dlq", "message_stats": {}},
            {"name": "bench1.order-timeline", "message_stats": {"deliver_get": 2100}},
            {"name": "bench2.order-saga", "message_stats": {"deliver_get": 999}},
            {"name": "bench1.idle"}
        ]);
        let exchanges = json!([
            {"name": "bench1.orderflow.events", "message_stats": {"publish_in": 2100, "publish_out": 4200}},
            {"name": "bench1.orderflow.dlx", "message_stats": {}},
            {"name": "amq.topic", "message_stats": {"publish_in": 5}}
        ]);
        assert_eq!(
            broker_counts(&queues, &exchanges, "bench1."),
            BrokerCounts {
                publishes: 2100,
                deliveries: 2700,
                redeliveries: 2
            }
        );
        assert_eq!(
            broker_counts(&json!(null), &json!({}), "x"),
            BrokerCounts::default()
        );
    }

    #[test]
    fn broker_counters_are_current_once_they_reach_the_runners() {
        let c = BrokerCounts {
            publishes: 2104,
            deliveries: 4223,
            redeliveries: 0,
        };
        assert!(caught_up(&c, 4223.0, 2104.0));
        assert!(!caught_up(&c, 4224.0, 2104.0));
        assert!(!caught_up(&BrokerCounts::default(), 8.0, 4.0));
    }
}
