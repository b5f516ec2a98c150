//! `PgPayments`: the `payments.payments` table. Each order's row is locked (created as
//! `pending` first if absent) so that every event about one order is applied serially.

use crate::domain::PaymentStatus;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A payment row as the functions need it.
#[derive(Debug, Clone)]
pub struct LockedPayment {
    pub status: PaymentStatus,
    pub payment_id: Option<Uuid>,
    pub amount_cents: i64,
    pub currency: String,
}

/// A payment as `orderflow verify` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub order_id: String,
    pub status: String,
    pub amount_cents: i64,
}

pub struct PgPayments;

impl PgPayments {
    /// Inserts a `pending` row if the order has none, then locks it until the transaction
    /// ends: concurrent events about the same order wait for each other here.
    pub async fn lock_or_create(
        conn: &mut PgConnection,
        order_id: &str,
    ) -> anyhow::Result<LockedPayment> {
        // One round trip: the no-op update on conflict locks the existing row (as FOR UPDATE
        // would) and returns it; a new row comes back as `pending`.
        let (status, payment_id, amount_cents, currency): (
            String,
            Option<Uuid>,
            Option<i64>,
            Option<String>,
        ) = sqlx::query_as(
            "INSERT INTO payments.payments (order_id, status) VALUES ($1, 'pending')
             ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id
             RETURNING status, payment_id, amount_cents, currency",
        )
        .bind(order_id)
        .fetch_one(&mut *conn)
        .await?;
        let status = PaymentStatus::parse(&status).ok_or_else(|| {
            anyhow::anyhow!("payment of order {order_id} has an unknown status {status:?}")
        })?;
        Ok(LockedPayment {
            status,
            payment_id,
            amount_cents: amount_cents.unwrap_or(0),
            currency: currency.unwrap_or_default(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record_authorization(
        conn: &mut PgConnection,
        order_id: &str,
        status: PaymentStatus,
        payment_id: Option<Uuid>,
        amount_cents: i64,
        currency: &str,
        token: &str,
        last4: Option<&str>,
        decline_code: Option<&str>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE payments.payments
             SET status = $2, payment_id = $3, amount_cents = $4, currency = $5, token = $6,
                 last4 = $7, decline_code = $8, updated_at = now()
             WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(status.as_str())
        .bind(payment_id)
        .bind(amount_cents)
        .bind(currency)
        .bind(token)
        .bind(last4)
        .bind(decline_code)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub async fn set_status(
        conn: &mut PgConnection,
        order_id: &str,
        status: PaymentStatus,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE payments.payments SET status = $2, updated_at = now() WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(status.as_str())
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Every payment, ordered by order id (for `orderflow verify` and tests).
pub async fn payments(pool: &PgPool) -> anyhow::Result<Vec<PaymentRow>> {
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT order_id, status, amount_cents FROM payments.payments ORDER BY order_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(order_id, status, amount)| PaymentRow {
            order_id,
            status,
            amount_cents: amount.unwrap_or(0),
        })
        .collect())
}
