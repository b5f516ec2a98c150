//! Orderflow notification service: one customer notification per order and kind (per
//! refund for refunds)
//! (`notifications` schema), rendered by pure functions, delivered after commit through a
//! `NotificationChannel` (log by default, webhook when configured).

pub mod channel;
pub mod domain;
pub mod functions;
pub mod pg;
pub mod webhook;

use sqlx::PgPool;

/// This service's Postgres schema.
pub const SCHEMA: &str = "notifications";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Creates the schema (with inbox/outbox) and runs this service's migrations.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    shared::db::migrate(database_url, SCHEMA, &MIGRATOR).await
}

/// Every binary of this crate and the function it serves.
pub const FUNCTIONS: &[(&str, shared::Constructor)] = &[
    (functions::SEND, functions::send),
    (functions::RELAY, functions::relay),
];

/// `(order_id, kind, count)` per order and kind, for `orderflow verify` (invariant 4:
/// exactly one notification per order and kind, one per refund for `order_refunded`).
pub use pg::{NotificationAudit, NotificationRow, audit};

pub async fn notification_counts(pool: &PgPool) -> anyhow::Result<Vec<(String, String, i64)>> {
    Ok(pg::counts(pool).await?)
}
