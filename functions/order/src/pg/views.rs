//! Read models: one order with its items and timeline for its owner, and every order for
//! the local runner's `verify`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    pub product_id: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub event_type: String,
    pub at: DateTime<Utc>,
    /// `consumed` (from the inbox) or `published` (from the outbox).
    pub source: String,
    pub event_id: Uuid,
}

/// The `GET /orders/{id}` body.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub status: String,
    pub reason: Option<String>,
    pub total_cents: i64,
    pub currency: String,
    pub items: Vec<ItemView>,
    pub timeline: Vec<TimelineEntry>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type HeadRow = (
    Uuid,
    String,
    Option<String>,
    i64,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// The order when `user_id` owns it; `None` for a missing order and for someone else's
/// (the API answers 404 to both, so order ids cannot be probed).
pub async fn order_for_owner(
    pool: &PgPool,
    order_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<OrderView>> {
    let head: Option<HeadRow> = sqlx::query_as(
        "SELECT order_id, status, reason, total_cents, currency, created_at, updated_at
         FROM orders.orders WHERE order_id = $1 AND user_id = $2",
    )
    .bind(order_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    let Some((order_id, status, reason, total_cents, currency, created_at, updated_at)) = head
    else {
        return Ok(None);
    };
    let items: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT product_id, quantity, unit_price_cents FROM orders.order_items WHERE order_id = $1 ORDER BY line",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    let items = items
        .into_iter()
        .map(|(product_id, quantity, unit_price_cents)| ItemView {
            product_id,
            quantity,
            unit_price_cents,
        })
        .collect();
    let timeline = timeline(pool, order_id).await?;
    Ok(Some(OrderView {
        order_id,
        status,
        reason,
        total_cents,
        currency,
        items,
        timeline,
        created_at,
        updated_at,
    }))
}

/// What this service consumed (inbox) and published (outbox) for the order, oldest first.
pub async fn timeline(pool: &PgPool, order_id: Uuid) -> sqlx::Result<Vec<TimelineEntry>> {
    let rows: Vec<(String, DateTime<Utc>, String, Uuid)> = sqlx::query_as(
        "SELECT event_type, processed_at AS at, 'consumed'::text AS source, event_id
             FROM orders.inbox WHERE order_id = $1
         UNION ALL
         SELECT event_type, created_at, 'published'::text, id
             FROM orders.outbox WHERE correlation_id = $1
         ORDER BY at, source, event_id",
    )
    .bind(order_id.to_string())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(event_type, at, source, event_id)| TimelineEntry {
            event_type,
            at,
            source,
            event_id,
        })
        .collect())
}

/// One order as `orderflow verify` and the demo read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: Uuid,
    pub status: String,
    pub reason: Option<String>,
    pub total_cents: i64,
    /// `(product_id, quantity)` per line.
    pub items: Vec<(String, i64)>,
}

pub async fn all_orders(pool: &PgPool) -> sqlx::Result<Vec<OrderRow>> {
    let heads: Vec<(Uuid, String, Option<String>, i64)> =
        sqlx::query_as("SELECT order_id, status, reason, total_cents FROM orders.orders ORDER BY created_at, order_id")
            .fetch_all(pool)
            .await?;
    let lines: Vec<(Uuid, String, i64)> =
        sqlx::query_as("SELECT order_id, product_id, quantity::bigint FROM orders.order_items ORDER BY order_id, line")
            .fetch_all(pool)
            .await?;
    let mut by_order: std::collections::HashMap<Uuid, Vec<(String, i64)>> =
        std::collections::HashMap::new();
    for (order_id, product_id, quantity) in lines {
        by_order
            .entry(order_id)
            .or_default()
            .push((product_id, quantity));
    }
    Ok(heads
        .into_iter()
        .map(|(order_id, status, reason, total_cents)| OrderRow {
            order_id,
            status,
            reason,
            total_cents,
            items: by_order.remove(&order_id).unwrap_or_default(),
        })
        .collect())
}
