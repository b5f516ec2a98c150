//! `orders.catalog`: the order service's copy of product prices (and whether each is still
//! sold), fed by `product.updated`.

use crate::domain::pricing::Price;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;

/// One catalog entry as `product.updated` carries it, already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub version: i64,
    pub discontinued: bool,
}

/// Prices of the given products; absent ids are unknown products.
pub async fn prices(pool: &PgPool, product_ids: &[String]) -> sqlx::Result<HashMap<String, Price>> {
    let rows: Vec<(String, i64, String, bool)> = sqlx::query_as(
        "SELECT product_id, price_cents, currency, discontinued FROM orders.catalog
         WHERE product_id = ANY($1)",
    )
    .bind(product_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, price_cents, currency, discontinued)| {
            (
                id,
                Price {
                    price_cents,
                    currency,
                    discontinued,
                },
            )
        })
        .collect())
}

/// Inserts or updates the entry, only when its version is newer than the stored one (an
/// older or replayed event never moves a price backwards). True when something changed.
pub async fn upsert_if_newer(conn: &mut PgConnection, entry: &CatalogEntry) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO orders.catalog (product_id, name, price_cents, currency, version, discontinued)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (product_id) DO UPDATE
             SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents,
                 currency = EXCLUDED.currency, version = EXCLUDED.version,
                 discontinued = EXCLUDED.discontinued
             WHERE orders.catalog.version < EXCLUDED.version",
    )
    .bind(&entry.product_id)
    .bind(&entry.name)
    .bind(entry.price_cents)
    .bind(&entry.currency)
    .bind(entry.version)
    .bind(entry.discontinued)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn len(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM orders.catalog")
        .fetch_one(pool)
        .await
}
