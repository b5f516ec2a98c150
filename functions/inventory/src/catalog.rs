//! Catalog seeding and the read-outs the local runner's `seed` and `verify` use.

use crate::backoffice::{self, CatalogError, Written};
use crate::domain::{ProductSeed, StockFigure};
use crate::product::{Adjustment, IfMatch, NewProduct, ProductPatch};
use crate::stock_cache::RedisStockCache;
use shared::context::Context;
use sqlx::PgPool;

/// A product's stock as `verify` checks it (initial = available + confirmed quantities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: String,
    pub initial: i64,
    pub available: i64,
}

/// Creates or updates the products and sets their stock (`available = stock`) through the
/// back office's own writes (`crate::backoffice`), in one transaction: a new product is
/// created with its stock as the initial adjustment; a known one is patched (name, price,
/// currency), then brought to `stock` by an adjustment whose id is deterministic
/// (`Adjustment::seed`). So a seeded product publishes what an admin-made one does
/// (`product.updated`, `stock.adjusted`, `stock.low`), and every change of stock is in the
/// ledger. The events are published after the commit, then the cache entries refreshed.
pub async fn upsert_products(ctx: &Context, products: &[ProductSeed]) -> anyhow::Result<()> {
    for p in products {
        p.validate()
            .map_err(|reason| anyhow::anyhow!("invalid product: {reason}"))?;
    }
    // Product rows are locked in id order, as every other writer locks them, so a seed
    // running beside a chunk of reservations cannot deadlock with it.
    let mut ordered: Vec<&ProductSeed> = products.iter().collect();
    ordered.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    let mut tx = ctx.pool.begin().await?;
    let mut written = Written::default();
    for p in ordered {
        seed_one(&mut tx, p, &mut written)
            .await
            .map_err(|e| anyhow::anyhow!("seeding {}: {e}", p.product_id))?;
    }
    shared::db::outbox_insert(&mut tx, crate::SCHEMA, &written.events).await?;
    tx.commit().await?;
    ctx.publish_committed(crate::SCHEMA, &written.events).await;
    RedisStockCache::from_context(ctx)
        .refresh(&written.figures)
        .await;
    Ok(())
}

async fn seed_one(
    conn: &mut sqlx::PgConnection,
    p: &ProductSeed,
    written: &mut Written,
) -> Result<(), CatalogError> {
    if backoffice::get(conn, &p.product_id).await?.is_none() {
        let new = NewProduct {
            product_id: p.product_id.clone(),
            name: p.name.clone(),
            price_cents: p.price_cents,
            currency: p.currency.clone(),
            stock: p.stock,
            low_stock_threshold: 0,
        };
        match backoffice::create(conn, &new, written).await {
            // Created by someone else since the read: patch it like any known product.
            Err(CatalogError::Exists(_)) => {}
            other => return other.map(|_| ()),
        }
    }
    let patch = ProductPatch {
        name: Some(p.name.clone()),
        price_cents: Some(p.price_cents),
        currency: Some(p.currency.clone()),
        ..Default::default()
    };
    backoffice::update(conn, &p.product_id, &IfMatch::Any, &patch, written).await?;
    // The row is locked by the update: nothing moves the stock between this read and the
    // adjustment.
    let (version, available): (i64, i32) =
        sqlx::query_as("SELECT version, available FROM inventory.products WHERE product_id = $1")
            .bind(&p.product_id)
            .fetch_one(&mut *conn)
            .await?;
    if available != p.stock {
        let adj = Adjustment::seed(&p.product_id, version, available, p.stock);
        backoffice::adjust(conn, &p.product_id, &adj, written).await?;
    }
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
    /// What live orders hold (reserved, not shipped), as the products row keeps it.
    pub reserved: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovementRow {
    pub movement_id: i64,
    pub product_id: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub delta: i64,
    /// Units that left with a carrier (`ship` movements; 0 for the others).
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    pub order_id: String,
    pub status: String,
    /// `(product_id, quantity)` per line.
    pub items: Vec<(String, i64)>,
}

pub async fn audit(conn: &mut sqlx::PgConnection) -> sqlx::Result<StockAudit> {
    let products: Vec<(String, i32, i64, i32)> = sqlx::query_as(
        "SELECT product_id, available, version, reserved FROM inventory.products ORDER BY product_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let movements: Vec<(i64, String, String, Option<String>, i32, i32)> = sqlx::query_as(
        "SELECT movement_id, product_id, kind, order_id, delta, quantity
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
            .map(|(product_id, available, version, reserved)| ProductFigure {
                product_id,
                available: i64::from(available),
                version,
                reserved: i64::from(reserved),
            })
            .collect(),
        movements: movements
            .into_iter()
            .map(
                |(movement_id, product_id, kind, order_id, delta, quantity)| MovementRow {
                    movement_id,
                    product_id,
                    kind,
                    order_id,
                    delta: i64::from(delta),
                    quantity: i64::from(quantity),
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
