//! Catalog seeding and the read-outs the local runner's `seed` and `verify` use.

use crate::domain::{ProductSeed, StockFigure};
use crate::stock_cache::RedisStockCache;
use shared::Envelope;
use shared::context::Context;
use shared::contracts::{Payload, ProductUpdated};
use sqlx::PgPool;

/// A product's stock as `verify` checks it (initial = available + confirmed quantities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: String,
    pub initial: i64,
    pub available: i64,
}

/// Upserts the products and sets their stock (`available = stock`) in one transaction with a `product.updated` event each, publishes those after the commit, then
/// refreshes the products' cache entries.
pub async fn upsert_products(ctx: &Context, products: &[ProductSeed]) -> anyhow::Result<()> {
    for p in products {
        p.validate()
            .map_err(|reason| anyhow::anyhow!("invalid product: {reason}"))?;
    }
    let mut tx = ctx.pool.begin().await?;
    let mut events = Vec::with_capacity(products.len());
    let mut figures = Vec::with_capacity(products.len());
    for p in products {
        let (version, available): (i64, i32) = sqlx::query_as(
            // `initial` counts what is on the shelf plus what orders already hold, so that
            // re-seeding a running system keeps `initial = available + held` (invariant 2).
            "INSERT INTO inventory.products (product_id, name, price_cents, currency, initial, available, version, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5, 1, now())
             ON CONFLICT (product_id) DO UPDATE SET
                 name = excluded.name, price_cents = excluded.price_cents, currency = excluded.currency,
                 initial = excluded.available + COALESCE((
                     SELECT sum(line.quantity) FROM inventory.reservations r,
                            jsonb_to_recordset(r.items) AS line(product_id text, quantity int)
                     WHERE r.status = 'reserved' AND line.product_id = excluded.product_id), 0),
                 available = excluded.available,
                 version = inventory.products.version + 1, updated_at = now()
             RETURNING version, available",
        )
        .bind(&p.product_id)
        .bind(&p.name)
        .bind(p.price_cents)
        .bind(&p.currency)
        .bind(p.stock)
        .fetch_one(&mut *tx)
        .await?;
        events.push(Envelope::new(
            Payload::ProductUpdated(ProductUpdated {
                product_id: p.product_id.clone(),
                name: p.name.clone(),
                price_cents: p.price_cents,
                currency: p.currency.clone(),
                version: u64::try_from(version).unwrap_or(0),
            }),
            None,
        ));
        figures.push((
            p.product_id.clone(),
            StockFigure {
                version,
                available: i64::from(available),
            },
        ));
    }
    shared::db::outbox_insert(&mut tx, crate::SCHEMA, &events).await?;
    tx.commit().await?;
    ctx.publish_committed(crate::SCHEMA, &events).await;
    RedisStockCache::from_context(ctx).refresh(&figures).await;
    Ok(())
}

/// Every product's stock, ordered by product id.
pub async fn stock_levels(pool: &PgPool) -> anyhow::Result<Vec<StockLevel>> {
    let rows: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT product_id, initial, available FROM inventory.products ORDER BY product_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(product_id, initial, available)| StockLevel {
            product_id,
            initial: i64::from(initial),
            available: i64::from(available),
        })
        .collect())
}

/// Every reservation as `(order_id, status)`, ordered by order id.
pub async fn reservations(pool: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT order_id, status FROM inventory.reservations ORDER BY order_id")
            .fetch_all(pool)
            .await?,
    )
}

/// The stock each order holds now (reservations in status `reserved`), as
/// `(order_id, product_id, quantity)` ordered by order and product.
pub async fn reserved_quantities(pool: &PgPool) -> anyhow::Result<Vec<(String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT r.order_id, line.product_id, line.quantity::bigint
         FROM inventory.reservations r,
              jsonb_to_recordset(r.items) AS line(product_id text, quantity int)
         WHERE r.status = 'reserved'
         ORDER BY r.order_id, line.product_id",
    )
    .fetch_all(pool)
    .await?)
}

/// One line per product whose cache entry exists and differs from Postgres.
pub async fn cache_disagreements(ctx: &Context) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, i64, i32)> = sqlx::query_as(
        "SELECT product_id, version, available FROM inventory.products ORDER BY product_id",
    )
    .fetch_all(&ctx.pool)
    .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let cached = RedisStockCache::from_context(ctx).get_many(&ids).await?;
    Ok(rows
        .into_iter()
        .zip(cached)
        .filter_map(|((id, version, available), hit)| {
            let hit = hit?;
            let db = StockFigure { version, available: i64::from(available) };
            (hit != db).then(|| {
                format!(
                    "stock cache of {id}: cache says available {} (version {}), Postgres says {} (version {})",
                    hit.available, hit.version, db.available, db.version
                )
            })
        })
        .collect())
}
