//! Orderflow inventory service: owns the catalog and its stock. Reserves an order's stock
//! when it is created (all lines or none, never overselling), gives it back when the order
//! is cancelled, and serves products and stock over HTTP through a Redis stock cache.
//!
//! Modules: `domain` (pure decisions), `product` (pure rules of the back office), `pg` (the
//! `PgStock` adapter), `stock_cache` (the `RedisStockCache` adapter), `api` (the public HTTP
//! handler), `admin` (the back office's HTTP handler), `backoffice` (catalog writes, shared
//! by `admin` and the seed), `catalog` (seeding and read-outs for the local runner),
//! `functions` (the Lambda functions' constructors).

pub mod admin;
pub mod api;
pub mod backoffice;
pub mod catalog;
pub mod domain;
pub mod functions;
pub mod pg;
pub mod product;
pub mod stock_cache;

pub use catalog::{
    MovementRow, ProductFigure, ReservationRow, StockAudit, StockLevel, audit as stock_audit,
    cache_disagreements, reservations, reserved_quantities, stock_levels, upsert_products,
};
pub use domain::ProductSeed;
pub use stock_cache::RedisStockCache;

pub const SCHEMA: &str = "inventory";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    shared::db::migrate(database_url, SCHEMA, &MIGRATOR).await
}

/// Every binary of this service and the function it serves.
pub const FUNCTIONS: &[(&str, shared::Constructor)] = &[
    ("inventory-reserve", functions::reserve),
    ("inventory-release", functions::release),
    ("inventory-products", functions::products),
    ("inventory-relay", functions::relay),
    ("inventory-admin", functions::admin),
];
