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
