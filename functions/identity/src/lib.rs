//! Orderflow identity service: registration, login and logout (HTTP functions), the HTTP
//! API's session authorizer, users in Postgres (`identity` schema), argon2 password hashes,
//! sessions in Redis via `shared`.

pub mod authorize;
pub mod domain;
pub mod functions;
pub mod password;
pub mod pg;

/// This service's Postgres schema.
pub const SCHEMA: &str = "identity";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Creates the schema (with inbox/outbox) and runs this service's migrations.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    shared::db::migrate(database_url, SCHEMA, &MIGRATOR).await
}

/// Every binary of this crate and the function it serves.
pub const FUNCTIONS: &[(&str, shared::Constructor)] = &[
    ("identity-register", functions::register),
    ("identity-login", functions::login),
    ("identity-logout", functions::logout),
    ("identity-authorize", authorize::authorize),
];

/// `orderflow admin grant|revoke EMAIL`: sets the user's role and logs them out everywhere,
/// so the next login carries the new role and no live session keeps the old one. `false`
/// when no user has that email.
pub async fn set_role(
    pool: &sqlx::PgPool,
    sessions: &shared::session::Sessions,
    email: &str,
    role: shared::session::Role,
) -> anyhow::Result<bool> {
    let Some(user_id) = pg::PgUsers::new(pool.clone()).set_role(email, role).await? else {
        return Ok(false);
    };
    sessions.revoke_all(user_id).await?;
    tracing::info!(%user_id, role = role.as_str(), "role set");
    Ok(true)
}
