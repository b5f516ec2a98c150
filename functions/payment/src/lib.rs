//! Orderflow payment service: authorizes the order's amount when it is created, captures it
//! when the order is confirmed, voids it (or refunds what was captured) when the order is
//! cancelled, and pays an admin's refund back once, through the `PaymentGateway` port (a
//! simulated gateway with provider-style test tokens).
//!
//! Modules: `domain` (pure decisions), `gateway` (the port, its selection and its
//! simulation), `http_gateway` (the adapter for a real provider), `pg` (the `PgPayments`
//! adapter), `functions` (the Lambda functions' constructors).

pub mod domain;
pub mod functions;
pub mod gateway;
pub mod http_gateway;
pub mod pg;

pub use gateway::GatewayCall;
pub use pg::{LedgerRow, PaymentAudit, PaymentRow, audit, payments};

pub const SCHEMA: &str = "payments";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    shared::db::migrate(database_url, SCHEMA, &MIGRATOR).await
}

/// Every binary of this service and the function it serves.
pub const FUNCTIONS: &[(&str, shared::Constructor)] = &[
    ("payment-process", functions::process),
    ("payment-settle", functions::settle),
    ("payment-refund", functions::refund),
    ("payment-relay", functions::relay),
];
