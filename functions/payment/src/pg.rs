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
    /// The provider's id of the authorization (see `gateway::Authorization`).
    pub provider_ref: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    /// What refunds gave back of the capture so far.
    pub refunded_cents: i64,
}

/// A payment as `orderflow verify` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub order_id: String,
    pub status: String,
    pub amount_cents: i64,
    /// What refunds gave back so far, by the payment row (the ledger has each refund).
    pub refunded_cents: i64,
}

/// One gateway call for `payments.ledger`.
#[derive(Debug, Clone, Copy)]
pub struct LedgerEntry<'a> {
    pub idempotency_key: &'a str,
    pub order_id: &'a str,
    pub kind: crate::gateway::CallKind,
    /// `approved` or `declined` for an authorization, `succeeded` otherwise.
    pub outcome: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub gateway_ref: Option<Uuid>,
    pub caused_by: &'a str,
    /// The gateway's id of a refund it made.
    pub gateway_refund_id: Option<&'a str>,
}

/// A payment's state after its authorization, for `record_authorizations`.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationRow<'a> {
    pub order_id: &'a str,
    pub status: PaymentStatus,
    pub payment_id: Option<Uuid>,
    /// What capture, void and refund name at the provider.
    pub provider_ref: Option<&'a str>,
    pub amount_cents: i64,
    pub currency: &'a str,
    /// The token's reference (`tok_...visa`), never the token.
    pub token_ref: &'a str,
    pub last4: Option<&'a str>,
    pub decline_code: Option<&'a str>,
}

/// A ledger row as `orderflow verify` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub idempotency_key: String,
    pub order_id: String,
    pub kind: String,
    pub outcome: String,
    pub amount_cents: i64,
    /// The gateway's id of a refund it made (`re_...`).
    pub gateway_refund_id: Option<String>,
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
        let (status, payment_id, amount_cents, currency, provider_ref, refunded_cents): (
            String,
            Option<Uuid>,
            Option<i64>,
            Option<String>,
            Option<String>,
            i64,
        ) = sqlx::query_as(
            "INSERT INTO payments.payments (order_id, status) VALUES ($1, 'pending')
             ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id
             RETURNING status, payment_id, amount_cents, currency, provider_ref, refunded_cents",
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
            provider_ref,
            amount_cents: amount_cents.unwrap_or(0),
            currency: currency.unwrap_or_default(),
            refunded_cents,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record_authorization(
        conn: &mut PgConnection,
        order_id: &str,
        status: PaymentStatus,
        payment_id: Option<Uuid>,
        provider_ref: Option<&str>,
        amount_cents: i64,
        currency: &str,
        token_ref: &str,
        last4: Option<&str>,
        decline_code: Option<&str>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE payments.payments
             SET status = $2, payment_id = $3, amount_cents = $4, currency = $5, token_ref = $6,
                 last4 = $7, decline_code = $8, provider_ref = $9, updated_at = now()
             WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(status.as_str())
        .bind(payment_id)
        .bind(amount_cents)
        .bind(currency)
        .bind(token_ref)
        .bind(last4)
        .bind(decline_code)
        .bind(provider_ref)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// `lock_or_create` for a chunk in one statement, rows locked in order-id order.
    pub async fn lock_or_create_many(
        conn: &mut PgConnection,
        order_ids: &[&str],
    ) -> anyhow::Result<std::collections::HashMap<String, PaymentStatus>> {
        let rows =
            shared::db::lock_or_create_statuses(conn, "payments.payments", order_ids).await?;
        rows.into_iter()
            .map(|(id, status)| {
                let parsed = PaymentStatus::parse(&status).ok_or_else(|| {
                    anyhow::anyhow!("payment of order {id} has an unknown status {status:?}")
                })?;
                Ok((id, parsed))
            })
            .collect()
    }

    /// A chunk's authorizations: the ledger rows (one insert) and the payments' new state
    /// (one update).
    pub async fn record_authorizations(
        conn: &mut PgConnection,
        calls: &[LedgerEntry<'_>],
        rows: &[AuthorizationRow<'_>],
    ) -> sqlx::Result<()> {
        if !calls.is_empty() {
            sqlx::query(
                "INSERT INTO payments.ledger
                     (idempotency_key, order_id, kind, outcome, amount_cents, currency, gateway_ref, caused_by)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                                      $6::text[], $7::uuid[], $8::text[])",
            )
            .bind(calls.iter().map(|c| c.idempotency_key).collect::<Vec<_>>())
            .bind(calls.iter().map(|c| c.order_id).collect::<Vec<_>>())
            .bind(calls.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>())
            .bind(calls.iter().map(|c| c.outcome).collect::<Vec<_>>())
            .bind(calls.iter().map(|c| c.amount_cents).collect::<Vec<_>>())
            .bind(calls.iter().map(|c| c.currency).collect::<Vec<_>>())
            .bind(calls.iter().map(|c| c.gateway_ref).collect::<Vec<_>>())
            .bind(calls.iter().map(|c| c.caused_by).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !rows.is_empty() {
            sqlx::query(
                "UPDATE payments.payments AS p
                 SET status = u.status, payment_id = u.payment_id, amount_cents = u.amount,
                     currency = u.currency, token_ref = u.token_ref, last4 = u.last4,
                     decline_code = u.decline_code, provider_ref = u.provider_ref,
                     updated_at = now()
                 FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::bigint[], $5::text[],
                             $6::text[], $7::text[], $8::text[], $9::text[])
                      AS u(order_id, status, payment_id, amount, currency, token_ref, last4,
                           decline_code, provider_ref)
                 WHERE p.order_id = u.order_id",
            )
            .bind(rows.iter().map(|r| r.order_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.payment_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.amount_cents).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.currency).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.token_ref).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.last4).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.decline_code).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.provider_ref).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Writes a gateway call to the ledger. The key is the call's identity: a second row
    /// for it cannot be written (the primary key refuses it and the message is retried),
    /// since the same key means the same call.
    pub async fn record_call(conn: &mut PgConnection, e: LedgerEntry<'_>) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO payments.ledger
                 (idempotency_key, order_id, kind, outcome, amount_cents, currency, gateway_ref,
                  caused_by, gateway_refund_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(e.idempotency_key)
        .bind(e.order_id)
        .bind(e.kind.as_str())
        .bind(e.outcome)
        .bind(e.amount_cents)
        .bind(e.currency)
        .bind(e.gateway_ref)
        .bind(e.caused_by)
        .bind(e.gateway_refund_id)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The outcome of the ledger's call under `idempotency_key`, if it was made: a refund
    /// is made once per refund id, however many events ask for it.
    pub async fn call_outcome(
        conn: &mut PgConnection,
        idempotency_key: &str,
    ) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT outcome FROM payments.ledger WHERE idempotency_key = $1")
            .bind(idempotency_key)
            .fetch_optional(conn)
            .await
    }

    /// Adds a refund the gateway made to what the payment has given back.
    pub async fn add_refunded(
        conn: &mut PgConnection,
        order_id: &str,
        amount_cents: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE payments.payments SET refunded_cents = refunded_cents + $2, updated_at = now()
             WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(amount_cents)
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
    let rows: Vec<(String, String, Option<i64>, i64)> = sqlx::query_as(
        "SELECT order_id, status, amount_cents, refunded_cents FROM payments.payments ORDER BY order_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(order_id, status, amount, refunded_cents)| PaymentRow {
            order_id,
            status,
            amount_cents: amount.unwrap_or(0),
            refunded_cents,
        })
        .collect())
}

/// What `orderflow verify` reads of the payment service, in the caller's transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentAudit {
    pub payments: Vec<PaymentRow>,
    pub ledger: Vec<LedgerRow>,
    /// The simulated gateway's record; `None` when the schema holds none (a real provider's
    /// record lives with the provider).
    pub gateway: Option<Vec<crate::gateway::GatewayCall>>,
}

pub async fn audit(conn: &mut PgConnection) -> sqlx::Result<PaymentAudit> {
    let payments: Vec<(String, String, Option<i64>, i64)> = sqlx::query_as(
        "SELECT order_id, status, amount_cents, refunded_cents FROM payments.payments ORDER BY order_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let ledger: Vec<(String, String, String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT idempotency_key, order_id, kind, outcome, amount_cents, gateway_refund_id
         FROM payments.ledger ORDER BY order_id, recorded_at",
    )
    .fetch_all(&mut *conn)
    .await?;
    let simulated: bool = sqlx::query_scalar("SELECT to_regclass('gateway_sim.calls') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    let gateway = if simulated {
        Some(crate::gateway::SimulatedGateway::calls(conn).await?)
    } else {
        None
    };
    Ok(PaymentAudit {
        payments: payments
            .into_iter()
            .map(|(order_id, status, amount, refunded_cents)| PaymentRow {
                order_id,
                status,
                amount_cents: amount.unwrap_or(0),
                refunded_cents,
            })
            .collect(),
        ledger: ledger
            .into_iter()
            .map(
                |(idempotency_key, order_id, kind, outcome, amount_cents, gateway_refund_id)| {
                    LedgerRow {
                        idempotency_key,
                        order_id,
                        kind,
                        outcome,
                        amount_cents,
                        gateway_refund_id,
                    }
                },
            )
            .collect(),
        gateway,
    })
}
