//! `orders.orders` and `orders.order_items`: creating orders, and loading (locked) and
//! saving their saga state.

use crate::domain::pricing::PricedOrder;
use crate::domain::saga::{PaymentResult, Reason, SagaState, Status, StockResult};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::time::Duration;
use uuid::Uuid;

pub struct NewOrder<'a> {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub customer_email: &'a str,
    pub priced: &'a PricedOrder,
    /// The payment token's reference (`tok_...visa`); the token itself is never stored.
    pub payment_ref: &'a str,
    /// How long it may stay PENDING before the expiry schedule cancels it.
    pub pending_timeout: Duration,
    /// The trace of its `order.created`, continued by every later event of the order.
    pub traceparent: &'a str,
    pub shipping_address: Option<&'a crate::domain::address::ShippingAddress>,
}

pub async fn insert(conn: &mut PgConnection, order: &NewOrder<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO orders.orders
             (order_id, user_id, customer_email, status, total_cents, currency, payment_ref, deadline_at, traceparent, shipping_address)
         VALUES ($1, $2, $3, 'PENDING', $4, $5, $6, now() + make_interval(secs => $7), $8, $9)",
    )
    .bind(order.order_id)
    .bind(order.user_id)
    .bind(order.customer_email)
    .bind(order.priced.total_cents)
    .bind(&order.priced.currency)
    .bind(order.payment_ref)
    .bind(order.pending_timeout.as_secs_f64())
    .bind(order.traceparent)
    .bind(order.shipping_address.map(sqlx::types::Json))
    .execute(&mut *conn)
    .await?;
    let lines = &order.priced.lines;
    let numbers: Vec<i32> = (1..).take(lines.len()).collect();
    let products: Vec<&str> = lines.iter().map(|l| l.product_id.as_str()).collect();
    let quantities: Vec<i32> = lines
        .iter()
        .map(|l| i32::try_from(l.quantity).unwrap_or(i32::MAX))
        .collect();
    let prices: Vec<i64> = lines.iter().map(|l| l.unit_price_cents).collect();
    // The name is read from the catalog copy in the same statement as the line is written
    // (no extra round trip): what the product was called when it was bought.
    sqlx::query(
        "INSERT INTO orders.order_items (order_id, line, product_id, quantity, unit_price_cents, name)
         SELECT $1, u.line, u.product_id, u.quantity, u.price, coalesce(c.name, '')
         FROM UNNEST($2::int[], $3::text[], $4::int[], $5::bigint[]) AS u(line, product_id, quantity, price)
         LEFT JOIN orders.catalog c ON c.product_id = u.product_id",
    )
    .bind(order.order_id)
    .bind(numbers)
    .bind(products)
    .bind(quantities)
    .bind(prices)
    .execute(conn)
    .await?;
    Ok(())
}

/// An order as the saga sees it, row-locked for the rest of the transaction.
#[derive(Debug, Clone)]
pub struct LockedOrder {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub customer_email: String,
    pub total_cents: i64,
    pub currency: String,
    pub state: SagaState,
    pub created_at: DateTime<Utc>,
    /// Empty for orders created before traces were stored.
    pub traceparent: String,
}

type SagaRow = (
    Uuid,
    Uuid,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    String,
);

const SAGA_COLUMNS: &str = "order_id, user_id, customer_email, total_cents, currency, status, reason, stock_result, payment_result, created_at, traceparent";

/// The row holds an order that violates our own CHECK constraints: a bug, not bad input.
#[derive(Debug, thiserror::Error)]
#[error("order {order_id} has an unreadable saga state in the database")]
pub struct CorruptRow {
    pub order_id: Uuid,
}

fn locked(row: SagaRow) -> Result<LockedOrder, CorruptRow> {
    let (
        order_id,
        user_id,
        customer_email,
        total_cents,
        currency,
        status,
        reason,
        stock,
        payment,
        created_at,
        traceparent,
    ) = row;
    let corrupt = || CorruptRow { order_id };
    let state = SagaState {
        status: Status::parse(&status).ok_or_else(corrupt)?,
        reason: reason
            .map(|r| Reason::parse(&r).ok_or_else(corrupt))
            .transpose()?,
        stock: stock
            .map(|s| StockResult::parse(&s).ok_or_else(corrupt))
            .transpose()?,
        payment: payment
            .map(|p| PaymentResult::parse(&p).ok_or_else(corrupt))
            .transpose()?,
    };
    Ok(LockedOrder {
        order_id,
        user_id,
        customer_email,
        total_cents,
        currency,
        state,
        created_at,
        traceparent,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Corrupt(#[from] CorruptRow),
}

/// `SELECT ... FOR UPDATE` of one order: concurrent results for the same order serialise here.
pub async fn lock(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<LockedOrder>, LoadError> {
    let row: Option<SagaRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SAGA_COLUMNS} FROM orders.orders WHERE order_id = $1 FOR UPDATE"
    )))
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(locked).transpose()?)
}

/// `lock` for a chunk of orders in one statement, rows locked in id order (so concurrent
/// chunks cannot deadlock). Unknown ids are absent.
pub async fn lock_many(
    conn: &mut PgConnection,
    order_ids: &[Uuid],
) -> Result<Vec<LockedOrder>, LoadError> {
    let rows: Vec<SagaRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SAGA_COLUMNS} FROM orders.orders WHERE order_id = ANY($1)
         ORDER BY order_id FOR UPDATE"
    )))
    .bind(order_ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(locked).collect::<Result<_, _>>()?)
}

/// Up to `limit` PENDING orders past their deadline, locked; rows another expiry run (or a
/// saga transaction) holds are skipped, not waited for.
pub async fn lock_due_for_expiry(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<LockedOrder>, LoadError> {
    let rows: Vec<SagaRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SAGA_COLUMNS} FROM orders.orders
         WHERE status = 'PENDING' AND deadline_at <= now()
         ORDER BY deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    )))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(locked).collect::<Result<_, _>>()?)
}

/// Persists the saga state; `finalized_at` is set once, when the order leaves PENDING.
pub async fn save_state(
    conn: &mut PgConnection,
    order_id: Uuid,
    state: &SagaState,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE orders.orders
         SET status = $2, reason = $3, stock_result = $4, payment_result = $5, updated_at = now(),
             finalized_at = CASE WHEN $2 <> 'PENDING' THEN coalesce(finalized_at, now()) END
         WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(state.status.as_str())
    .bind(state.reason.map(Reason::as_str))
    .bind(state.stock.map(StockResult::as_str))
    .bind(state.payment.map(PaymentResult::as_str))
    .execute(conn)
    .await?;
    Ok(())
}

/// `save_state` for many orders in one statement.
pub async fn save_states(
    conn: &mut PgConnection,
    states: &[(Uuid, SagaState)],
) -> sqlx::Result<()> {
    if states.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE orders.orders AS o
         SET status = u.status, reason = u.reason, stock_result = u.stock, payment_result = u.payment,
             updated_at = now(),
             finalized_at = CASE WHEN u.status <> 'PENDING' THEN coalesce(o.finalized_at, now()) END
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
              AS u(id, status, reason, stock, payment)
         WHERE o.order_id = u.id",
    )
    .bind(states.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(states.iter().map(|(_, s)| s.status.as_str()).collect::<Vec<_>>())
    .bind(states.iter().map(|(_, s)| s.reason.map(Reason::as_str)).collect::<Vec<_>>())
    .bind(states.iter().map(|(_, s)| s.stock.map(StockResult::as_str)).collect::<Vec<_>>())
    .bind(states.iter().map(|(_, s)| s.payment.map(PaymentResult::as_str)).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
