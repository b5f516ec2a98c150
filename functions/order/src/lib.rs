//! The Orderflow order service: it accepts orders over HTTP, runs the order saga on stock
//! and payment results, keeps a copy of catalog prices, and expires orders left PENDING.
//! After the decision, the customer may cancel (`order-cancel`) and an admin ships,
//! delivers and refunds (`order-admin`); `order-saga` records each refund's outcome.
//!
//! `domain` holds the pure decisions (request parsing, pricing, the saga state machine);
//! `pg` the Postgres adapters (schema `orders`); `apply` runs the saga against a locked
//! order; `functions` builds one Lambda function per binary, `order-timeline` among them:
//! it records every event of every order, whichever service published it.

pub mod admission;
pub mod apply;
pub mod domain;
pub mod functions;
pub mod pg;

pub use functions::expire_due;
pub use pg::views::{OrderRow, RefundRow};

use sqlx::PgPool;

pub const SCHEMA: &str = "orders";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    shared::db::migrate(database_url, SCHEMA, &MIGRATOR).await
}

/// Every function binary of the service and its constructor.
pub const FUNCTIONS: &[(&str, shared::Constructor)] = &[
    ("order-create", functions::create),
    ("order-get", functions::get),
    ("order-cancel", functions::cancel),
    ("order-admin", functions::admin),
    ("order-saga", functions::saga),
    ("order-catalog", functions::catalog),
    ("order-expire", functions::expire),
    ("order-relay", functions::relay),
    (functions::TIMELINE, functions::timeline),
];

/// Every order with its lines (for `orderflow verify` and the demo).
pub async fn orders(pool: &PgPool) -> anyhow::Result<Vec<OrderRow>> {
    let mut conn = pool.acquire().await?;
    Ok(pg::views::all_orders(&mut conn).await?)
}

/// The same, in the caller's transaction (`orderflow verify` reads every service's rows in
/// one snapshot).
pub async fn orders_in(conn: &mut sqlx::PgConnection) -> anyhow::Result<Vec<OrderRow>> {
    Ok(pg::views::all_orders(conn).await?)
}

/// Every `(product_id, price_cents)` the order service can price; the runner's `seed`
/// waits on it to know the catalog has propagated.
pub async fn catalog_prices(pool: &PgPool) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT product_id, price_cents FROM orders.catalog ORDER BY product_id")
            .fetch_all(pool)
            .await?,
    )
}

/// Accept-to-final figures over every final order: what `orderflow bench` reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LatencySummary {
    pub completed: i64,
    pub pending: i64,
    /// Seconds from the first order's creation to the last order's final state.
    pub span_secs: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub async fn latency_summary(pool: &PgPool) -> anyhow::Result<LatencySummary> {
    let (completed, pending, span_secs, p50_ms, p95_ms, p99_ms, max_ms): (i64, i64, f64, f64, f64, f64, f64) = sqlx::query_as(
        "WITH f AS (SELECT created_at, finalized_at, EXTRACT(EPOCH FROM finalized_at - created_at) * 1000 AS ms
                    FROM orders.orders WHERE finalized_at IS NOT NULL)
         SELECT (SELECT count(*) FROM f),
                (SELECT count(*) FROM orders.orders WHERE finalized_at IS NULL),
                COALESCE(EXTRACT(EPOCH FROM (SELECT max(finalized_at) - min(created_at) FROM f))::float8, 0),
                COALESCE((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM f)::float8, 0),
                COALESCE((SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) FROM f)::float8, 0),
                COALESCE((SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM f)::float8, 0),
                COALESCE((SELECT max(ms) FROM f)::float8, 0)",
    )
    .fetch_one(pool)
    .await?;
    Ok(LatencySummary {
        completed,
        pending,
        span_secs,
        p50_ms,
        p95_ms,
        p99_ms,
        max_ms,
    })
}

/// How many orders have reached a final state (cheap; polled while a bench drains).
pub async fn final_count(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM orders.orders WHERE finalized_at IS NOT NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// How many products the order service can price.
pub async fn catalog_len(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(pg::catalog::len(pool).await?)
}

/// The order's status and reason, if it exists (for `orderflow timeline`).
pub async fn status_of(
    pool: &PgPool,
    order_id: uuid::Uuid,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    Ok(
        sqlx::query_as("SELECT status, reason FROM orders.orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Every event of the order that `order-timeline` recorded, by time (for `orderflow
/// timeline`, which puts them in causal order with `domain::timeline::causal_order`).
pub async fn timeline_events(
    pool: &PgPool,
    order_id: &str,
) -> anyhow::Result<Vec<pg::timeline::TimelineRow>> {
    Ok(pg::timeline::for_order(pool, order_id).await?)
}

/// Sets the `orderflow_orders` gauges (every status and reason, 0 when absent) and the age
/// of the oldest PENDING order: polled by the local runner, emitted by `order-expire` as
/// EMF on Lambda.
pub async fn record_order_gauges(pool: &PgPool) -> anyhow::Result<()> {
    use shared::metrics::{OLDEST_PENDING, ORDERS};
    let (counts, oldest) = pg::views::state_counts(pool).await?;
    let states = [
        ("PENDING", "none"),
        ("CONFIRMED", "none"),
        ("SHIPPED", "none"),
        ("DELIVERED", "none"),
        ("CANCELLED", "out_of_stock"),
        ("CANCELLED", "payment_declined"),
        ("CANCELLED", "expired"),
        ("CANCELLED", "customer_cancelled"),
    ];
    for (status, reason) in states {
        let n = counts
            .iter()
            .filter(|(s, r, _)| s == status && r.as_deref().unwrap_or("none") == reason)
            .map(|c| c.2)
            .sum::<i64>();
        ORDERS.set(&[status, reason], n as f64);
    }
    OLDEST_PENDING.set(&[], oldest);
    Ok(())
}
