//! `orders.idempotency`: the answer given to each `(user, Idempotency-Key)`, written in the
//! transaction that creates the order (or the admin refund), so a replay returns it and
//! creates nothing. Refund keys are stored as `refund <order id> <key>`: a client key never
//! holds a space, so they cannot collide with an order-create key of the same user.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status_code: u16,
    pub response: serde_json::Value,
}

pub async fn find(pool: &PgPool, user_id: Uuid, key: &str) -> sqlx::Result<Option<StoredResponse>> {
    let mut conn = pool.acquire().await?;
    find_in(&mut conn, user_id, key).await
}

/// `find` in the caller's transaction (an admin refund reads it under the order's lock).
pub async fn find_in(
    conn: &mut PgConnection,
    user_id: Uuid,
    key: &str,
) -> sqlx::Result<Option<StoredResponse>> {
    let row: Option<(String, i32, serde_json::Value)> =
        sqlx::query_as("SELECT request_hash, status_code, response FROM orders.idempotency WHERE user_id = $1 AND key = $2")
            .bind(user_id)
            .bind(key)
            .fetch_optional(conn)
            .await?;
    Ok(
        row.map(|(request_hash, status_code, response)| StoredResponse {
            request_hash,
            status_code: u16::try_from(status_code).unwrap_or(500),
            response,
        }),
    )
}

/// Claims the key in the caller's transaction. False when another request holds it: with a
/// concurrent holder, Postgres makes this wait for that transaction, so after a rollback
/// `find` sees the winner's committed answer.
pub async fn claim(
    conn: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    request_hash: &str,
    status_code: u16,
    response: &serde_json::Value,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO orders.idempotency (user_id, key, request_hash, status_code, response)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, key) DO NOTHING",
    )
    .bind(user_id)
    .bind(key)
    .bind(request_hash)
    .bind(i32::from(status_code))
    .bind(response)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
