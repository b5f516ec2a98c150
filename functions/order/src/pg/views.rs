//! Read models: one order with its items, address, shipment, refunds and timeline for its
//! owner, every order for the
//! local runner's `verify`, and the order counts behind the `orderflow_orders` gauges.

use crate::domain::timeline::{Causal, causal_order};
use crate::pg::lifecycle::{RefundView, ShipmentRow};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashSet;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    pub product_id: String,
    /// The product's name when it was bought ('' for orders placed before names were kept).
    pub name: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// One event of the order, as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub event_id: Uuid,
    pub event_type: String,
    /// The event that caused this one; `null` for `order.created`.
    pub causation_id: Option<String>,
    /// What it said, in a few words (`failed: card_declined`); empty until recorded.
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
    /// Same as `occurred_at` (the field's first name, kept for existing clients).
    pub at: DateTime<Utc>,
    /// When `order-timeline` saw it on the bus; `null` while it is on its way.
    pub recorded_at: Option<DateTime<Utc>>,
    /// `published` for the order service's own events (from its outbox), `observed` for
    /// the other services' events (seen on the bus).
    pub source: String,
}

impl Causal for TimelineEntry {
    fn event_id(&self) -> String {
        self.event_id.to_string()
    }
    fn causation_id(&self) -> String {
        self.causation_id.clone().unwrap_or_default()
    }
    fn occurred_at_ms(&self) -> i64 {
        self.occurred_at.timestamp_millis()
    }
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
    /// As given at `POST /orders`; `null` when none was.
    pub shipping_address: Option<crate::domain::address::ShippingAddress>,
    /// `null` until the order ships.
    pub shipment: Option<ShipmentRow>,
    pub refunds: Vec<RefundView>,
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
    Option<sqlx::types::Json<crate::domain::address::ShippingAddress>>,
);

/// The order when `user_id` owns it; `None` for a missing order and for someone else's
/// (the API answers 404 to both, so order ids cannot be probed).
pub async fn order_for_owner(
    pool: &PgPool,
    order_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<OrderView>> {
    let head: Option<HeadRow> = sqlx::query_as(
        "SELECT order_id, status, reason, total_cents, currency, created_at, updated_at, shipping_address
         FROM orders.orders WHERE order_id = $1 AND user_id = $2",
    )
    .bind(order_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    let Some((
        order_id,
        status,
        reason,
        total_cents,
        currency,
        created_at,
        updated_at,
        shipping_address,
    )) = head
    else {
        return Ok(None);
    };
    let items: Vec<(String, String, i32, i64)> = sqlx::query_as(
        "SELECT product_id, name, quantity, unit_price_cents FROM orders.order_items WHERE order_id = $1 ORDER BY line",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    let items = items
        .into_iter()
        .map(|(product_id, name, quantity, unit_price_cents)| ItemView {
            product_id,
            name,
            quantity,
            unit_price_cents,
        })
        .collect();
    let shipment = {
        let mut conn = pool.acquire().await?;
        crate::pg::lifecycle::shipment(&mut conn, order_id).await?
    };
    let refunds = crate::pg::lifecycle::refunds_of(pool, order_id).await?;
    let timeline = timeline(pool, order_id).await?;
    Ok(Some(OrderView {
        order_id,
        status,
        reason,
        total_cents,
        currency,
        items,
        shipping_address: shipping_address.map(|a| a.0),
        shipment,
        refunds,
        timeline,
        created_at,
        updated_at,
    }))
}

/// Every event of the order in causal order: what `order-timeline` recorded from the bus,
/// plus the order service's own events still in its outbox on their way there.
pub async fn timeline(pool: &PgPool, order_id: Uuid) -> sqlx::Result<Vec<TimelineEntry>> {
    let order_id = order_id.to_string();
    let seen = crate::pg::timeline::for_order(pool, &order_id).await?;
    let own = shared::db::outbox_for_order(pool, crate::SCHEMA, &order_id).await?;
    let published: HashSet<Uuid> = own.iter().map(|r| r.event_id).collect();
    let mut entries: Vec<TimelineEntry> = seen
        .into_iter()
        .map(|r| TimelineEntry {
            event_id: r.event_id,
            event_type: r.event_type,
            causation_id: Some(r.causation_id).filter(|c| !c.is_empty()),
            detail: r.detail,
            occurred_at: r.occurred_at,
            at: r.occurred_at,
            recorded_at: Some(r.recorded_at),
            source: source(published.contains(&r.event_id)).into(),
        })
        .collect();
    let recorded: HashSet<Uuid> = entries.iter().map(|e| e.event_id).collect();
    entries.extend(
        own.into_iter()
            .filter(|r| !recorded.contains(&r.event_id))
            .map(|r| TimelineEntry {
                event_id: r.event_id,
                event_type: r.event_type,
                causation_id: Some(r.causation_id).filter(|c| !c.is_empty()),
                detail: String::new(),
                occurred_at: r.created_at,
                at: r.created_at,
                recorded_at: None,
                source: source(true).into(),
            }),
    );
    Ok(causal_order(entries))
}

fn source(own: bool) -> &'static str {
    if own { "published" } else { "observed" }
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
    /// Its shipment columns as stored (each `None` until set).
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub refunds: Vec<RefundRow>,
}

/// A refund of the order as `orderflow verify` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRow {
    pub refund_id: Uuid,
    /// `admin` (asked by an admin) or `cancel` (the full refund after a customer cancel).
    pub kind: String,
    pub amount_cents: i64,
    /// `requested`, `refunded` or `failed`.
    pub status: String,
}

pub async fn all_orders(conn: &mut sqlx::PgConnection) -> sqlx::Result<Vec<OrderRow>> {
    type Head = (
        Uuid,
        String,
        Option<String>,
        i64,
        Option<String>,
        Option<String>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let heads: Vec<Head> = sqlx::query_as(
        "SELECT order_id, status, reason, total_cents, carrier, tracking_number, shipped_at, delivered_at
         FROM orders.orders ORDER BY created_at, order_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let lines: Vec<(Uuid, String, i64)> =
        sqlx::query_as("SELECT order_id, product_id, quantity::bigint FROM orders.order_items ORDER BY order_id, line")
            .fetch_all(&mut *conn)
            .await?;
    let refunds: Vec<(Uuid, Uuid, String, i64, String)> = sqlx::query_as(
        "SELECT order_id, refund_id, kind, amount_cents, status FROM orders.refunds ORDER BY order_id, created_at, refund_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut by_order: std::collections::HashMap<Uuid, Vec<(String, i64)>> =
        std::collections::HashMap::new();
    for (order_id, product_id, quantity) in lines {
        by_order
            .entry(order_id)
            .or_default()
            .push((product_id, quantity));
    }
    let mut refunds_by_order: std::collections::HashMap<Uuid, Vec<RefundRow>> =
        std::collections::HashMap::new();
    for (order_id, refund_id, kind, amount_cents, status) in refunds {
        refunds_by_order
            .entry(order_id)
            .or_default()
            .push(RefundRow {
                refund_id,
                kind,
                amount_cents,
                status,
            });
    }
    Ok(heads
        .into_iter()
        .map(
            |(
                order_id,
                status,
                reason,
                total_cents,
                carrier,
                tracking_number,
                shipped_at,
                delivered_at,
            )| OrderRow {
                order_id,
                status,
                reason,
                total_cents,
                items: by_order.remove(&order_id).unwrap_or_default(),
                carrier,
                tracking_number,
                shipped_at,
                delivered_at,
                refunds: refunds_by_order.remove(&order_id).unwrap_or_default(),
            },
        )
        .collect())
}

/// Orders per `(status, reason)`, and the age in seconds of the oldest PENDING order (0
/// when none is pending).
pub async fn state_counts(
    pool: &PgPool,
) -> sqlx::Result<(Vec<(String, Option<String>, i64)>, f64)> {
    let counts = sqlx::query_as(
        "SELECT status, reason, count(*) FROM orders.orders GROUP BY status, reason ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let oldest: f64 = sqlx::query_scalar(
        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
         FROM orders.orders WHERE status = 'PENDING'",
    )
    .fetch_one(pool)
    .await?;
    Ok((counts, oldest))
}
