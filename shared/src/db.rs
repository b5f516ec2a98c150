//! Postgres: the pool, per-service schemas and migrations, and the inbox/outbox tables
//! every service keeps in its own schema.

use crate::envelope::{Encoding, Envelope};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool, Row};

// Every dynamic statement below only interpolates a service's schema name, which is a
// compile-time constant of that service, never input.
use std::str::FromStr;
use std::time::Duration;

/// The URL's connect options. A loopback server with no `sslmode` in the URL is reached
/// without TLS: sqlx's default (`prefer`) would negotiate TLS on every connection, and
/// encrypting loopback traffic costs CPU on both ends for nothing (measured in the runner's
/// and Postgres's profiles). Any other host, or an explicit `sslmode`, keeps what it says.
pub fn connect_options(database_url: &str) -> anyhow::Result<PgConnectOptions> {
    let opts = PgConnectOptions::from_str(database_url).map_err(|e| {
        anyhow::anyhow!(
            "invalid DATABASE_URL {}: {e}",
            crate::config::redact(database_url)
        )
    })?;
    let explicit = url::Url::parse(database_url)
        .map(|u| u.query_pairs().any(|(k, _)| k == "sslmode"))
        .unwrap_or(true);
    if !explicit && is_loopback(opts.get_host()) {
        return Ok(opts.ssl_mode(sqlx::postgres::PgSslMode::Disable));
    }
    Ok(opts)
}

/// `localhost`, `127.0.0.0/8`, `::1`, or a Unix socket directory.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.starts_with('/')
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A lazily connecting pool: a cold start never fails because Postgres is down; the first
/// query does, as a transient error, and the pool reconnects by itself afterwards.
pub fn pool(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let opts = connect_options(database_url)?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(opts))
}

/// Creates the service's schema, its inbox and outbox, then runs its own migrations with
/// their bookkeeping table inside that schema (so services never share migration history).
pub async fn migrate(
    database_url: &str,
    schema: &str,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&connect_options(database_url)?)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach Postgres at {}: {e}",
                crate::config::redact(database_url)
            )
        })?;
    // Concurrent `up`s (tests, several runners) must not race on CREATE SCHEMA.
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(schema)
        .execute(&mut conn)
        .await?;
    let result = async {
        sqlx::raw_sql(AssertSqlSafe(messaging_ddl(schema)))
            .execute(&mut conn)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO {schema}")))
            .execute(&mut conn)
            .await?;
        migrator.run(&mut conn).await?;
        anyhow::Ok(())
    }
    .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(schema)
        .execute(&mut conn)
        .await;
    result
}

fn messaging_ddl(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.inbox (
             consumer     text        NOT NULL,
             event_id     uuid        NOT NULL,
             event_type   text        NOT NULL,
             order_id     text        NOT NULL DEFAULT '',
             processed_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (consumer, event_id)
         );
         CREATE TABLE IF NOT EXISTS {schema}.outbox (
             id             uuid        PRIMARY KEY,
             event_type     text        NOT NULL,
             correlation_id text        NOT NULL,
             causation_id   text        NOT NULL,
             envelope       bytea       NOT NULL,
             created_at     timestamptz NOT NULL DEFAULT now(),
             published_at   timestamptz
         );
         CREATE INDEX IF NOT EXISTS outbox_unpublished ON {schema}.outbox (created_at)
             WHERE published_at IS NULL;
         CREATE INDEX IF NOT EXISTS outbox_causation ON {schema}.outbox (causation_id)
             WHERE published_at IS NULL;
         -- For the order timeline: which delivery of an event committed (x-delivery-count
         -- + 1), how many deliveries there were in all (duplicates included), and when the
         -- event occurred, so consumption latency is processed_at - occurred_at.
         ALTER TABLE {schema}.inbox
             ADD COLUMN IF NOT EXISTS attempts    int NOT NULL DEFAULT 1,
             ADD COLUMN IF NOT EXISTS deliveries  int NOT NULL DEFAULT 1,
             ADD COLUMN IF NOT EXISTS occurred_at timestamptz;
         CREATE INDEX IF NOT EXISTS inbox_order ON {schema}.inbox (order_id);
         CREATE INDEX IF NOT EXISTS outbox_correlation ON {schema}.outbox (correlation_id);"
    )
}

/// Records that `consumer` is handling these events (each with its delivery number), in
/// the transaction that applies them, and returns the ids it had not handled before: the
/// others are duplicates. One statement for a whole chunk of a batch.
pub async fn inbox_record_many(
    conn: &mut PgConnection,
    schema: &str,
    consumer: &str,
    events: &[(&Envelope, i64)],
) -> sqlx::Result<std::collections::HashSet<uuid::Uuid>> {
    let ids: Vec<uuid::Uuid> = events.iter().map(|(e, _)| e.event_uuid()).collect();
    let types: Vec<&str> = events.iter().map(|(e, _)| e.event_type.as_str()).collect();
    let orders: Vec<&str> = events
        .iter()
        .map(|(e, _)| e.correlation_id.as_str())
        .collect();
    let attempts: Vec<i32> = events
        .iter()
        .map(|(_, a)| i32::try_from(*a).unwrap_or(i32::MAX))
        .collect();
    let occurred: Vec<f64> = events
        .iter()
        .map(|(e, _)| e.occurred_at_ms as f64)
        .collect();
    let fresh: Vec<uuid::Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
        "INSERT INTO {schema}.inbox (consumer, event_id, event_type, order_id, attempts, occurred_at)
         SELECT $1, id, t, o, a, to_timestamp(ms / 1000)
         FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::int[], $6::float8[]) AS u(id, t, o, a, ms)
         ON CONFLICT DO NOTHING RETURNING event_id"
    )))
    .bind(consumer)
    .bind(ids)
    .bind(types)
    .bind(orders)
    .bind(attempts)
    .bind(occurred)
    .fetch_all(conn)
    .await?;
    Ok(fresh.into_iter().collect())
}

/// Takes back an inbox record whose message was not applied after all (it failed, or is
/// being parked), so a redelivery or a replay handles it again.
pub async fn inbox_forget(
    conn: &mut PgConnection,
    schema: &str,
    consumer: &str,
    event_id: uuid::Uuid,
) -> sqlx::Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {schema}.inbox WHERE consumer = $1 AND event_id = $2"
    )))
    .bind(consumer)
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts one more delivery of an event `consumer` already handled (after the chunk's
/// commit, on its own: the count only feeds the timeline).
pub async fn inbox_note_duplicate(
    pool: &PgPool,
    schema: &str,
    consumer: &str,
    event_id: uuid::Uuid,
) -> sqlx::Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {schema}.inbox SET deliveries = deliveries + 1 WHERE consumer = $1 AND event_id = $2"
    )))
    .bind(consumer)
    .bind(event_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// One inbox row: a consumer's record of an event it processed.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxRow {
    pub consumer: String,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// The delivery (1 = first) on which the consumer committed it.
    pub attempts: i32,
    /// Deliveries seen in all; more than one means duplicates were skipped.
    pub deliveries: i32,
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    pub processed_at: chrono::DateTime<chrono::Utc>,
}

/// Every event of an order that the consumers of `schema` processed.
pub async fn inbox_for_order(
    pool: &PgPool,
    schema: &str,
    order_id: &str,
) -> sqlx::Result<Vec<InboxRow>> {
    type Row = (
        String,
        uuid::Uuid,
        String,
        i32,
        i32,
        Option<chrono::DateTime<chrono::Utc>>,
        chrono::DateTime<chrono::Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT consumer, event_id, event_type, attempts, deliveries, occurred_at, processed_at
         FROM {schema}.inbox WHERE order_id = $1 ORDER BY processed_at, consumer"
    )))
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(consumer, event_id, event_type, attempts, deliveries, occurred_at, processed_at)| {
                InboxRow {
                    consumer,
                    event_id,
                    event_type,
                    attempts,
                    deliveries,
                    occurred_at,
                    processed_at,
                }
            },
        )
        .collect())
}

/// One outbox row of an order, without its body.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub causation_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub published_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every event `schema`'s service wrote for an order, published or not.
pub async fn outbox_for_order(
    pool: &PgPool,
    schema: &str,
    order_id: &str,
) -> sqlx::Result<Vec<OutboxRow>> {
    type Row = (
        uuid::Uuid,
        String,
        String,
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT id, event_type, causation_id, created_at, published_at
         FROM {schema}.outbox WHERE correlation_id = $1 ORDER BY created_at, id"
    )))
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(event_id, event_type, causation_id, created_at, published_at)| OutboxRow {
                event_id,
                event_type,
                causation_id,
                created_at,
                published_at,
            },
        )
        .collect())
}

/// Locks (creating as `pending` where absent) the per-order rows of `table`, keyed by
/// `order_id` with a `status` column, for a chunk of orders in one statement, and returns
/// each row's status. Rows are locked in order-id order, so concurrent chunks cannot
/// deadlock on each other; the no-op update on conflict locks an existing row as
/// `FOR UPDATE` would. `table` is a compile-time name of the caller's schema, never input.
pub async fn lock_or_create_statuses(
    conn: &mut PgConnection,
    table: &'static str,
    order_ids: &[&str],
) -> sqlx::Result<Vec<(String, String)>> {
    let mut ids: Vec<&str> = order_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO {table} (order_id, status)
         SELECT id, 'pending' FROM UNNEST($1::text[]) AS u(id) ORDER BY id
         ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id
         RETURNING order_id, status"
    )))
    .bind(&ids)
    .fetch_all(conn)
    .await
}

/// Writes outgoing events to the outbox in the caller's transaction.
pub async fn outbox_insert(
    conn: &mut PgConnection,
    schema: &str,
    events: &[Envelope],
) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = events.iter().map(Envelope::event_uuid).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let corr: Vec<&str> = events.iter().map(|e| e.correlation_id.as_str()).collect();
    let cause: Vec<&str> = events.iter().map(|e| e.causation_id.as_str()).collect();
    let bodies: Vec<Vec<u8>> = events
        .iter()
        .map(|e| e.encode(Encoding::Protobuf))
        .collect();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {schema}.outbox (id, event_type, correlation_id, causation_id, envelope)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[])"
    )))
    .bind(ids)
    .bind(types)
    .bind(corr)
    .bind(cause)
    .bind(bodies)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn outbox_mark_published(
    pool: &PgPool,
    schema: &str,
    ids: &[uuid::Uuid],
) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(AssertSqlSafe(format!("UPDATE {schema}.outbox SET published_at = now() WHERE id = ANY($1) AND published_at IS NULL")))
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}

/// Unpublished events caused by `causation_id`: what a crash or a broker failure after the
/// commit left behind; re-sent when the same message is delivered again.
pub async fn outbox_unpublished_caused_by(
    pool: &PgPool,
    schema: &str,
    causation_id: &str,
) -> sqlx::Result<Vec<Envelope>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT envelope FROM {schema}.outbox WHERE causation_id = $1 AND published_at IS NULL ORDER BY id"
    )))
    .bind(causation_id)
    .fetch_all(pool)
    .await?;
    Ok(decode_rows(rows))
}

fn decode_rows(rows: Vec<sqlx::postgres::PgRow>) -> Vec<Envelope> {
    rows.into_iter()
        .filter_map(|r| {
            let bytes: Vec<u8> = r.get(0);
            // Rows are written by `outbox_insert` from valid envelopes.
            Envelope::decode(&bytes, Encoding::Protobuf).ok()
        })
        .collect()
}

/// Publishes up to `limit` unpublished rows older than `min_age`, oldest first, holding
/// row locks (`SKIP LOCKED`) so concurrent relays never send the same row twice at once.
/// `send` returns the ids of the rows the broker did not take (it returned them as
/// unroutable), which stay unpublished; an error keeps them all. Returns how many were
/// published.
pub async fn outbox_relay(
    pool: &PgPool,
    schema: &str,
    min_age: Duration,
    limit: i64,
    send: impl AsyncFnOnce(Vec<Envelope>) -> anyhow::Result<Vec<uuid::Uuid>>,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT envelope FROM {schema}.outbox
         WHERE published_at IS NULL AND created_at < now() - make_interval(secs => $1)
         ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    )))
    .bind(min_age.as_secs_f64())
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let envs = decode_rows(rows);
    if envs.is_empty() {
        return Ok(0);
    }
    let ids: Vec<uuid::Uuid> = envs.iter().map(Envelope::event_uuid).collect();
    let kept = send(envs).await?;
    let published: Vec<uuid::Uuid> = ids.into_iter().filter(|id| !kept.contains(id)).collect();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {schema}.outbox SET published_at = now() WHERE id = ANY($1)"
    )))
    .bind(&published)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(published.len())
}

/// Unpublished outbox rows and the age of the oldest, in seconds.
pub async fn outbox_backlog<'e>(
    db: impl sqlx::PgExecutor<'e>,
    schema: &str,
) -> sqlx::Result<(i64, f64)> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
         FROM {schema}.outbox WHERE published_at IS NULL"
    )))
    .fetch_one(db)
    .await?;
    Ok((row.get(0), row.get(1)))
}

/// Per consumer of this schema's inbox: how many events it handled and how long after they
/// occurred (queue wait plus handling), in milliseconds: p50, p95, p99, max.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageLatency {
    pub consumer: String,
    pub count: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub async fn stage_latencies(pool: &PgPool, schema: &str) -> sqlx::Result<Vec<StageLatency>> {
    let rows: Vec<(String, i64, f64, f64, f64, f64)> = sqlx::query_as(AssertSqlSafe(format!(
        "WITH l AS (SELECT consumer, EXTRACT(EPOCH FROM processed_at - occurred_at) * 1000 AS ms
                    FROM {schema}.inbox WHERE occurred_at IS NOT NULL)
         SELECT consumer, count(*),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::float8,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::float8,
                max(ms)::float8
         FROM l GROUP BY consumer ORDER BY consumer"
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(consumer, count, p50_ms, p95_ms, p99_ms, max_ms)| StageLatency {
                consumer,
                count,
                p50_ms,
                p95_ms,
                p99_ms,
                max_ms,
            },
        )
        .collect())
}

#[cfg(test)]
mod connect_tests {
    use super::*;
    use sqlx::postgres::PgSslMode;

    fn mode(url: &str) -> String {
        format!("{:?}", connect_options(url).expect("parses").get_ssl_mode())
    }

    #[test]
    fn loopback_without_sslmode_skips_tls_and_everything_else_keeps_its_setting() {
        let disable = format!("{:?}", PgSslMode::Disable);
        let prefer = format!("{:?}", PgSslMode::Prefer);
        let require = format!("{:?}", PgSslMode::Require);
        for url in [
            "postgres://postgres@127.0.0.1:5432/orderflow",
            "postgres://postgres@localhost/orderflow",
            "postgres://postgres@[::1]:5432/orderflow",
        ] {
            assert_eq!(mode(url), disable, "{url}");
        }
        assert_eq!(mode("postgres://u@db.example.com/orderflow"), prefer);
        assert_eq!(
            mode("postgres://postgres@127.0.0.1/orderflow?sslmode=require"),
            require
        );
    }
}
