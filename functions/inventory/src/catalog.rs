//! Catalog seeding and the read-outs the local runner's `seed` and `verify` use.

use crate::domain::{ProductSeed, StockFigure};
use crate::pg::Movement;
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
        // Locked first so the restock recorded below is exactly the difference this seed
        // makes, whatever reservations commit around it.
        let before: Option<i32> = sqlx::query_scalar(
            "SELECT available FROM inventory.products WHERE product_id = $1 FOR UPDATE",
        )
        .bind(&p.product_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (version, available): (i64, i32) = sqlx::query_as(
            // `initial` counts what is on the shelf plus what orders already hold, so that
            // re-seeding a running system keeps `initial = available + held`.
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
        let delta = available - before.unwrap_or(0);
        if delta != 0 {
            sqlx::query(
                "INSERT INTO inventory.stock_movements (product_id, kind, delta) VALUES ($1, $2, $3)",
            )
            .bind(&p.product_id)
            .bind(Movement::Restock.as_str())
            .bind(delta)
            .execute(&mut *tx)
            .await?;
        }
        events.push(Envelope::new(
            Payload::ProductUpdated(ProductUpdated {
                product_id: p.product_id.clone(),
                name: p.name.clone(),
                price_cents: p.price_cents,
                currency: p.currency.clone(),
                version: u64::try_from(version).unwrap_or(0),
                ..Default::default()
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

/// What `orderflow verify` reads of the inventory, in the caller's transaction (one
/// snapshot with the other services' rows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockAudit {
    pub products: Vec<ProductFigure>,
    /// In ledger order (`movement_id`), which per product is the order the stock changed in:
    /// each movement is written while its product row is locked.
    pub movements: Vec<MovementRow>,
    pub reservations: Vec<ReservationRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductFigure {
    pub product_id: String,
    pub available: i64,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovementRow {
    pub movement_id: i64,
    pub product_id: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub delta: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    pub order_id: String,
    pub status: String,
    /// `(product_id, quantity)` per line.
    pub items: Vec<(String, i64)>,
}

pub async fn audit(conn: &mut sqlx::PgConnection) -> sqlx::Result<StockAudit> {
    let products: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT product_id, available, version FROM inventory.products ORDER BY product_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let movements: Vec<(i64, String, String, Option<String>, i32)> = sqlx::query_as(
        "SELECT movement_id, product_id, kind, order_id, delta
         FROM inventory.stock_movements ORDER BY movement_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let reservations: Vec<(String, String, sqlx::types::Json<Vec<crate::domain::Line>>)> =
        sqlx::query_as(
            "SELECT order_id, status, items FROM inventory.reservations ORDER BY order_id",
        )
        .fetch_all(&mut *conn)
        .await?;
    Ok(StockAudit {
        products: products
            .into_iter()
            .map(|(product_id, available, version)| ProductFigure {
                product_id,
                available: i64::from(available),
                version,
            })
            .collect(),
        movements: movements
            .into_iter()
            .map(
                |(movement_id, product_id, kind, order_id, delta)| MovementRow {
                    movement_id,
                    product_id,
                    kind,
                    order_id,
                    delta: i64::from(delta),
                },
            )
            .collect(),
        reservations: reservations
            .into_iter()
            .map(|(order_id, status, items)| ReservationRow {
                order_id,
                status,
                items: items
                    .0
                    .into_iter()
                    .map(|l| (l.product_id, i64::from(l.quantity)))
                    .collect(),
            })
            .collect(),
    })
}
