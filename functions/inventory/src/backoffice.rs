//! The catalog's writes, in the caller's transaction: create a product, patch it under a
//! version check, adjust its stock once per adjustment id. `inventory-admin` and the
//! runner's `seed` both go through here, so a product made either way publishes the same
//! events (`product.updated`, `stock.adjusted`, `stock.low`), each written to the outbox in
//! the transaction that makes the change.

use crate::domain::StockFigure;
use crate::product::{Adjustment, IfMatch, NewProduct, ProductPatch, fell_to_low};
use serde::Serialize;
use shared::Envelope;
use shared::contracts::{Payload, ProductUpdated, StockAdjusted, StockLow};
use sqlx::PgConnection;

/// A product as the admin routes answer it. `version` is the catalog version (the ETag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Product {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub available: i32,
    pub reserved: i32,
    pub discontinued: bool,
    pub low_stock_threshold: i32,
    pub version: i64,
}

/// The answer of a stock adjustment (also what a retry with the same id gets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdjustmentOutcome {
    pub adjustment_id: String,
    pub product_id: String,
    pub delta: i32,
    pub available: i32,
    pub reserved: i32,
}

/// Why a write was refused; each is one 4xx.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("product {0} already exists")]
    Exists(String),
    #[error("product {0} not found")]
    NotFound(String),
    #[error("product {product_id} is at version {current}, not the one If-Match names")]
    VersionMismatch { product_id: String, current: i64 },
    #[error("adjustment {0} was already used with a different product, delta or reason")]
    AdjustmentReused(String),
    #[error(
        "{product_id} has {available} available; a delta of {delta} would go below what is reserved"
    )]
    InsufficientStock {
        product_id: String,
        available: i32,
        delta: i32,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a transaction of writes leaves to do after its commit: the events (already in the
/// outbox) to publish, the stock figures to write to the cache.
#[derive(Debug, Default)]
pub struct Written {
    pub events: Vec<Envelope>,
    pub figures: Vec<(String, StockFigure)>,
}

/// The columns of a `Product`, as a literal so that queries stay static strings.
macro_rules! product_columns {
    () => {
        "product_id, name, price_cents, currency, available, reserved, discontinued, \
         low_stock_threshold, catalog_version AS version"
    };
}

fn product_updated(p: &Product) -> Envelope {
    Envelope::new(
        Payload::ProductUpdated(ProductUpdated {
            product_id: p.product_id.clone(),
            name: p.name.clone(),
            price_cents: p.price_cents,
            currency: p.currency.clone(),
            version: u64::try_from(p.version).unwrap_or(0),
            discontinued: p.discontinued,
            low_stock_threshold: u32::try_from(p.low_stock_threshold).unwrap_or(0),
        }),
        None,
    )
}

/// The product, read without a lock.
pub async fn get(conn: &mut PgConnection, product_id: &str) -> sqlx::Result<Option<Product>> {
    sqlx::query_as(concat!(
        "SELECT ",
        product_columns!(),
        " FROM inventory.products WHERE product_id = $1"
    ))
    .bind(product_id)
    .fetch_optional(conn)
    .await
}

/// The product, locked until the transaction ends (every writer of a product row takes
/// this lock first, as reservations do).
async fn lock(conn: &mut PgConnection, product_id: &str) -> sqlx::Result<Option<Product>> {
    sqlx::query_as(concat!(
        "SELECT ",
        product_columns!(),
        " FROM inventory.products WHERE product_id = $1 FOR UPDATE"
    ))
    .bind(product_id)
    .fetch_optional(conn)
    .await
}

/// Creates the product at catalog version 1, then gives it its initial stock through an
/// adjustment (`initial:<id>`), as any later stock change goes.
pub async fn create(
    conn: &mut PgConnection,
    new: &NewProduct,
    out: &mut Written,
) -> Result<Product, CatalogError> {
    let created: Option<Product> = sqlx::query_as(concat!(
        "INSERT INTO inventory.products
             (product_id, name, price_cents, currency, initial, available, version,
              catalog_version, low_stock_threshold, updated_at)
         VALUES ($1, $2, $3, $4, 0, 0, 1, 1, $5, now())
         ON CONFLICT (product_id) DO NOTHING
         RETURNING ",
        product_columns!(),
        ""
    ))
    .bind(&new.product_id)
    .bind(&new.name)
    .bind(new.price_cents)
    .bind(&new.currency)
    .bind(new.low_stock_threshold)
    .fetch_optional(&mut *conn)
    .await?;
    let product = created.ok_or_else(|| CatalogError::Exists(new.product_id.clone()))?;
    out.events.push(product_updated(&product));
    out.figures.push((
        product.product_id.clone(),
        StockFigure {
            version: 1,
            available: 0,
        },
    ));
    if new.stock > 0 {
        adjust(
            conn,
            &new.product_id,
            &Adjustment::initial(&new.product_id, new.stock),
            out,
        )
        .await?;
        return get(conn, &new.product_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(new.product_id.clone()));
    }
    Ok(product)
}

/// Applies the patch when `if_match` names the current version; a patch that changes
/// nothing answers the product as it is (no new version, no event).
pub async fn update(
    conn: &mut PgConnection,
    product_id: &str,
    if_match: &IfMatch,
    patch: &ProductPatch,
    out: &mut Written,
) -> Result<Product, CatalogError> {
    let current = lock(conn, product_id)
        .await?
        .ok_or_else(|| CatalogError::NotFound(product_id.to_string()))?;
    if !if_match.matches(current.version) {
        return Err(CatalogError::VersionMismatch {
            product_id: product_id.to_string(),
            current: current.version,
        });
    }
    let changes = patch.name.as_ref().is_some_and(|n| *n != current.name)
        || patch.price_cents.is_some_and(|p| p != current.price_cents)
        || patch
            .currency
            .as_ref()
            .is_some_and(|c| *c != current.currency)
        || patch
            .discontinued
            .is_some_and(|d| d != current.discontinued)
        || patch
            .low_stock_threshold
            .is_some_and(|t| t != current.low_stock_threshold);
    if !changes {
        return Ok(current);
    }
    let updated: Product = sqlx::query_as(concat!(
        "UPDATE inventory.products SET
             name = COALESCE($2, name), price_cents = COALESCE($3, price_cents),
             currency = COALESCE($4, currency), discontinued = COALESCE($5, discontinued),
             low_stock_threshold = COALESCE($6, low_stock_threshold),
             catalog_version = catalog_version + 1, updated_at = now()
         WHERE product_id = $1
         RETURNING ",
        product_columns!(),
        ""
    ))
    .bind(product_id)
    .bind(&patch.name)
    .bind(patch.price_cents)
    .bind(&patch.currency)
    .bind(patch.discontinued)
    .bind(patch.low_stock_threshold)
    .fetch_one(&mut *conn)
    .await?;
    out.events.push(product_updated(&updated));
    Ok(updated)
}

/// Applies the adjustment once: `Ok((outcome, true))` when applied now, `Ok((outcome,
/// false))` when this id was applied before with the same product, delta and reason (the
/// stored outcome, nothing applied). Never takes `available` below zero: what orders hold
/// is already out of it, so stock can never drop below what is reserved.
pub async fn adjust(
    conn: &mut PgConnection,
    product_id: &str,
    adj: &Adjustment,
    out: &mut Written,
) -> Result<(AdjustmentOutcome, bool), CatalogError> {
    // The product lock first: two requests with one id serialize on it, so the second one
    // finds the first one's row below.
    let current = lock(conn, product_id)
        .await?
        .ok_or_else(|| CatalogError::NotFound(product_id.to_string()))?;
    let stored: Option<(String, i32, String, i32, i32)> = sqlx::query_as(
        "SELECT product_id, delta, reason, available, reserved
         FROM inventory.stock_adjustments WHERE adjustment_id = $1",
    )
    .bind(&adj.adjustment_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((stored_product, delta, reason, available, reserved)) = stored {
        if stored_product != product_id || delta != adj.delta || reason != adj.reason {
            return Err(CatalogError::AdjustmentReused(adj.adjustment_id.clone()));
        }
        return Ok((
            AdjustmentOutcome {
                adjustment_id: adj.adjustment_id.clone(),
                product_id: product_id.to_string(),
                delta,
                available,
                reserved,
            },
            false,
        ));
    }
    let after = i64::from(current.available) + i64::from(adj.delta);
    if after < 0 {
        return Err(CatalogError::InsufficientStock {
            product_id: product_id.to_string(),
            available: current.available,
            delta: adj.delta,
        });
    }
    let (available, reserved, version): (i32, i32, i64) = sqlx::query_as(
        "UPDATE inventory.products
         SET available = available + $2, initial = initial + $2, version = version + 1,
             updated_at = now()
         WHERE product_id = $1
         RETURNING available, reserved, version",
    )
    .bind(product_id)
    .bind(adj.delta)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO inventory.stock_movements (product_id, kind, delta) VALUES ($1, 'adjust', $2)",
    )
    .bind(product_id)
    .bind(adj.delta)
    .execute(&mut *conn)
    .await?;
    // A same id for another product slipped past the lock (it locked another row): the
    // primary key refuses it, and so do we.
    let inserted = sqlx::query(
        "INSERT INTO inventory.stock_adjustments
             (adjustment_id, product_id, delta, reason, available, reserved)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (adjustment_id) DO NOTHING",
    )
    .bind(&adj.adjustment_id)
    .bind(product_id)
    .bind(adj.delta)
    .bind(&adj.reason)
    .bind(available)
    .bind(reserved)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(CatalogError::AdjustmentReused(adj.adjustment_id.clone()));
    }
    out.events.push(Envelope::new(
        Payload::StockAdjusted(StockAdjusted {
            product_id: product_id.to_string(),
            adjustment_id: adj.adjustment_id.clone(),
            delta: i64::from(adj.delta),
            available: i64::from(available),
            reason: adj.reason.clone(),
        }),
        None,
    ));
    let threshold = i64::from(current.low_stock_threshold);
    if fell_to_low(
        i64::from(current.available),
        i64::from(available),
        threshold,
    ) {
        out.events
            .push(stock_low(product_id, i64::from(available), threshold, None));
    }
    out.figures.push((
        product_id.to_string(),
        StockFigure {
            version,
            available: i64::from(available),
        },
    ));
    Ok((
        AdjustmentOutcome {
            adjustment_id: adj.adjustment_id.clone(),
            product_id: product_id.to_string(),
            delta: adj.delta,
            available,
            reserved,
        },
        true,
    ))
}

/// `stock.low` for a product that has just fallen to `available` (at or below
/// `threshold`), caused by `cause` when an event made the change.
pub fn stock_low(
    product_id: &str,
    available: i64,
    threshold: i64,
    cause: Option<&Envelope>,
) -> Envelope {
    Envelope::new(
        Payload::StockLow(StockLow {
            product_id: product_id.to_string(),
            available,
            threshold: u32::try_from(threshold).unwrap_or(0),
        }),
        cause,
    )
}
