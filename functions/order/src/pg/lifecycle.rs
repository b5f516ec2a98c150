//! The order after its decision: the shipment columns of `orders.orders`, the lines as
//! bought, and `orders.refunds` (an admin's requests and the outcomes the payment service
//! reports). Callers hold the order's row lock where a decision depends on what is read.

use crate::domain::fulfilment::Shipment;
use crate::domain::refund::{Prior, Purchased, RefundLine};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The shipment of a SHIPPED or DELIVERED order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShipmentRow {
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl ShipmentRow {
    pub fn shipment(&self) -> Shipment {
        Shipment {
            carrier: self.carrier.clone(),
            tracking_number: self.tracking_number.clone(),
        }
    }
}

type ShipmentCols = (
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn shipment_of(row: ShipmentCols) -> Option<ShipmentRow> {
    match row {
        (Some(carrier), Some(tracking_number), Some(shipped_at), delivered_at) => {
            Some(ShipmentRow {
                carrier,
                tracking_number,
                shipped_at,
                delivered_at,
            })
        }
        _ => None,
    }
}

/// The order's shipment, `None` before it ships.
pub async fn shipment(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> sqlx::Result<Option<ShipmentRow>> {
    let row: Option<ShipmentCols> = sqlx::query_as(
        "SELECT carrier, tracking_number, shipped_at, delivered_at FROM orders.orders WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(shipment_of))
}

/// CONFIRMED -> SHIPPED with its shipment (the caller holds the row lock and checked).
pub async fn mark_shipped(
    conn: &mut PgConnection,
    order_id: Uuid,
    s: &Shipment,
) -> sqlx::Result<Option<ShipmentRow>> {
    let row: ShipmentCols = sqlx::query_as(
        "UPDATE orders.orders
         SET status = 'SHIPPED', carrier = $2, tracking_number = $3, shipped_at = now(), updated_at = now()
         WHERE order_id = $1
         RETURNING carrier, tracking_number, shipped_at, delivered_at",
    )
    .bind(order_id)
    .bind(&s.carrier)
    .bind(&s.tracking_number)
    .fetch_one(conn)
    .await?;
    Ok(shipment_of(row))
}

/// SHIPPED -> DELIVERED (the caller holds the row lock and checked).
pub async fn mark_delivered(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> sqlx::Result<Option<ShipmentRow>> {
    let row: ShipmentCols = sqlx::query_as(
        "UPDATE orders.orders
         SET status = 'DELIVERED', delivered_at = now(), updated_at = now()
         WHERE order_id = $1
         RETURNING carrier, tracking_number, shipped_at, delivered_at",
    )
    .bind(order_id)
    .fetch_one(conn)
    .await?;
    Ok(shipment_of(row))
}

/// The order's lines as bought.
pub async fn lines(conn: &mut PgConnection, order_id: Uuid) -> sqlx::Result<Vec<Purchased>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT product_id, quantity::bigint, unit_price_cents FROM orders.order_items
         WHERE order_id = $1 ORDER BY line",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(product_id, quantity, unit_price_cents)| Purchased {
            product_id,
            quantity,
            unit_price_cents,
        })
        .collect())
}

/// Refunds of the order that count against what is left: every one but the failed.
pub async fn prior_refunds(conn: &mut PgConnection, order_id: Uuid) -> sqlx::Result<Vec<Prior>> {
    let rows: Vec<(i64, sqlx::types::Json<Vec<RefundLine>>)> = sqlx::query_as(
        "SELECT amount_cents, lines FROM orders.refunds WHERE order_id = $1 AND status <> 'failed'",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(amount_cents, lines)| Prior {
            amount_cents,
            lines: lines
                .0
                .into_iter()
                .map(|l| (l.product_id, l.quantity))
                .collect(),
        })
        .collect())
}

pub struct NewRefund<'a> {
    pub refund_id: Uuid,
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub lines: &'a [RefundLine],
    pub restock: bool,
    pub reason: &'a str,
    pub requested_by: Uuid,
}

/// An admin's refund, `requested` until the payment service reports its outcome.
pub async fn insert_refund(conn: &mut PgConnection, r: &NewRefund<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO orders.refunds
             (refund_id, order_id, kind, amount_cents, currency, lines, restock, reason, requested_by, status)
         VALUES ($1, $2, 'admin', $3, $4, $5, $6, $7, $8, 'requested')",
    )
    .bind(r.refund_id)
    .bind(r.order_id)
    .bind(r.amount_cents)
    .bind(r.currency)
    .bind(sqlx::types::Json(r.lines))
    .bind(r.restock)
    .bind(r.reason)
    .bind(r.requested_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// What the payment service reported for a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Refunded,
    Failed(String),
}

pub struct ReportedRefund<'a> {
    pub refund_id: Uuid,
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub outcome: Outcome,
}

/// Records a refund's outcome: an admin's `requested` refund becomes `refunded` or
/// `failed`; a refund this service did not ask for (the full refund after a customer
/// cancel) is recorded as a `cancel` refund. The first outcome wins: a redelivery or a
/// late contradicting report changes nothing. True when something changed.
pub async fn record_outcome(conn: &mut PgConnection, r: &ReportedRefund<'_>) -> sqlx::Result<bool> {
    let (status, failure) = match &r.outcome {
        Outcome::Refunded => ("refunded", None),
        Outcome::Failed(reason) => ("failed", Some(reason.as_str())),
    };
    let done = sqlx::query(
        "INSERT INTO orders.refunds (refund_id, order_id, kind, amount_cents, currency, status, failure_reason)
         VALUES ($1, $2, 'cancel', $3, $4, $5, $6)
         ON CONFLICT (refund_id) DO UPDATE
             SET status = EXCLUDED.status, failure_reason = EXCLUDED.failure_reason, updated_at = now()
             WHERE orders.refunds.status = 'requested' AND orders.refunds.order_id = EXCLUDED.order_id",
    )
    .bind(r.refund_id)
    .bind(r.order_id)
    .bind(r.amount_cents.max(0))
    .bind(r.currency)
    .bind(status)
    .bind(failure)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// True when the order exists.
pub async fn order_exists(conn: &mut PgConnection, order_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orders.orders WHERE order_id = $1)")
        .bind(order_id)
        .fetch_one(conn)
        .await
}

/// One refund as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RefundView {
    pub refund_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub reason: String,
    pub restock: bool,
    pub created_at: DateTime<Utc>,
}

pub async fn refunds_of(pool: &PgPool, order_id: Uuid) -> sqlx::Result<Vec<RefundView>> {
    sqlx::query_as(
        "SELECT refund_id, amount_cents, currency, status, reason, restock, created_at
         FROM orders.refunds WHERE order_id = $1 ORDER BY created_at, refund_id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
}
