//! `PgUsers`: the users table in Postgres.

use crate::domain::Email;
use shared::session::Role;
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

/// A stored user, as login needs it.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user_id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
}

#[derive(Clone)]
pub struct PgUsers {
    pool: PgPool,
}

impl PgUsers {
    pub fn new(pool: PgPool) -> Self {
        PgUsers { pool }
    }

    pub async fn email_taken(&self, email: &Email) -> sqlx::Result<bool> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM identity.users WHERE lower(email) = lower($1))",
        )
        .bind(email.as_str())
        .fetch_one(&self.pool)
        .await?;
        row.try_get(0)
    }

    /// Inserts the user; `None` when the email (in any case) is already taken, including
    /// when a concurrent registration won the race after our pre-check.
    pub async fn insert(&self, email: &Email, password_hash: &str) -> sqlx::Result<Option<Uuid>> {
        let row = sqlx::query(
            "INSERT INTO identity.users (user_id, email, password_hash) VALUES ($1, $2, $3)
             ON CONFLICT ((lower(email))) DO NOTHING
             RETURNING user_id",
        )
        .bind(Uuid::now_v7())
        .bind(email.as_str())
        .bind(password_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get(0)).transpose()
    }

    pub async fn find_by_email(&self, email: &str) -> sqlx::Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT user_id, email, password_hash, role FROM identity.users WHERE lower(email) = lower($1)")
            .bind(email.trim())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(UserRecord {
                user_id: r.try_get(0)?,
                email: r.try_get(1)?,
                password_hash: r.try_get(2)?,
                role: Role::parse(r.try_get::<&str, _>(3)?).unwrap_or_default(),
            })
        })
        .transpose()
    }

    /// Sets the user's role; the user's id when the email is known.
    pub async fn set_role(&self, email: &str, role: Role) -> sqlx::Result<Option<Uuid>> {
        sqlx::query_scalar(
            "UPDATE identity.users SET role = $2 WHERE lower(email) = lower($1) RETURNING user_id",
        )
        .bind(email.trim())
        .bind(role.as_str())
        .fetch_optional(&self.pool)
        .await
    }
}
