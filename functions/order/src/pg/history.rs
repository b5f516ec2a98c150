//! `GET /orders`: a customer's orders, newest first, a page at a time (keyset pagination on
//! the order id).
//!
//! The key is the order id alone: a UUID v7 begins with its creation time in milliseconds,
//! so ordering by it is ordering by creation, and it is unique, so no two rows tie at a page
//! boundary. An order placed while a client pages sorts before the first page, never between
//! pages already read: nothing is skipped and nothing repeats (an OFFSET would shift every
//! later page by one). Two ids minted in the same millisecond by different processes order
//! by their random bits, which is still one fixed order.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    pub product_id: String,
    /// The product's name when it was bought.
    pub name: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// One order in the list: what a customer's "my orders" page shows (the timeline is on
/// `GET /orders/{id}`).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryOrder {
    pub order_id: Uuid,
    pub status: String,
    pub reason: Option<String>,
    pub total_cents: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub items: Vec<HistoryItem>,
}

type Head = (
    Uuid,
    String,
    Option<String>,
    i64,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// Up to `limit` of the user's orders older than `before` (all when `None`), newest first,
/// with `status` as a filter; and whether more follow.
pub async fn page(
    pool: &PgPool,
    user_id: Uuid,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: u16,
) -> sqlx::Result<(Vec<HistoryOrder>, bool)> {
    let heads: Vec<Head> = sqlx::query_as(
        "SELECT order_id, status, reason, total_cents, currency, created_at, updated_at
         FROM orders.orders
         WHERE user_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR order_id < $3)
         ORDER BY order_id DESC
         LIMIT $4",
    )
    .bind(user_id)
    .bind(status)
    .bind(before)
    // One more than asked: whether a next page exists, without a count.
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let more = heads.len() > usize::from(limit);
    let heads = &heads[..heads.len().min(usize::from(limit))];
    let ids: Vec<Uuid> = heads.iter().map(|h| h.0).collect();
    // Every page's lines in one query.
    let lines: Vec<(Uuid, String, String, i32, i64)> = sqlx::query_as(
        "SELECT order_id, product_id, name, quantity, unit_price_cents
         FROM orders.order_items WHERE order_id = ANY($1) ORDER BY order_id, line",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_order: HashMap<Uuid, Vec<HistoryItem>> = HashMap::new();
    for (order_id, product_id, name, quantity, unit_price_cents) in lines {
        by_order.entry(order_id).or_default().push(HistoryItem {
            product_id,
            name,
            quantity,
            unit_price_cents,
        });
    }
    let orders = heads
        .iter()
        .cloned()
        .map(
            |(order_id, status, reason, total_cents, currency, created_at, updated_at)| {
                HistoryOrder {
                    items: by_order.remove(&order_id).unwrap_or_default(),
                    order_id,
                    status,
                    reason,
                    total_cents,
                    currency,
                    created_at,
                    updated_at,
                }
            },
        )
        .collect();
    Ok((orders, more))
}
