//! What a stack needs before its functions can work: every service's migrations (each in
//! its own schema) and the broker topology of every queue trigger of template.yaml. The
//! runner's `up`, `migrate` and `topology` and the bootstrap custom resource all call these,
//! so local and cloud brokers and databases cannot drift apart.

use crate::template::{self, FunctionSpec};
use anyhow::Context as _;
use shared::Config;

/// Migrations of every service and the broker topology of every queue trigger.
pub async fn prepare(cfg: &Config, specs: &[FunctionSpec]) -> anyhow::Result<()> {
    create_database_if_missing(&cfg.database_url).await?;
    migrate_all(&cfg.database_url).await?;
    declare_topology(cfg, specs).await
}

/// The schemas `migrate_all` migrates, in its order.
pub const SCHEMAS: [&str; 5] = [
    identity::SCHEMA,
    inventory::SCHEMA,
    payment::SCHEMA,
    notification::SCHEMA,
    order::SCHEMA,
];

/// Runs every service's migrations (each in its own schema); idempotent.
pub async fn migrate_all(database_url: &str) -> anyhow::Result<()> {
    identity::migrate(database_url).await?;
    inventory::migrate(database_url).await?;
    payment::migrate(database_url).await?;
    notification::migrate(database_url).await?;
    order::migrate(database_url).await?;
    Ok(())
}

/// A first run should not need a manual `createdb`: create the database named by the URL
/// when the server answers that it does not exist.
pub async fn create_database_if_missing(database_url: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let err = match sqlx::PgConnection::connect(database_url).await {
        Ok(conn) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Err(e) => e,
    };
    let missing = err
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "3D000");
    if !missing {
        anyhow::bail!(
            "cannot reach Postgres at {}: {err}",
            shared::config::redact(database_url)
        );
    }
    let mut url = url::Url::parse(database_url)?;
    let name = url.path().trim_start_matches('/').to_string();
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database name {name:?} must be [A-Za-z0-9_]"
    );
    url.set_path("/postgres");
    let mut admin = sqlx::PgConnection::connect(url.as_str())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach Postgres at {}: {e}",
                shared::config::redact(url.as_str())
            )
        })?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    tracing::info!(database = %name, "created the database");
    Ok(())
}

pub async fn declare_topology(cfg: &Config, specs: &[FunctionSpec]) -> anyhow::Result<()> {
    let conn = shared::publisher::connect(&cfg.amqp_url, "topology").await?;
    let ch = conn.create_channel().await?;
    shared::topology::declare(
        &ch,
        &shared::topology::Names::new(cfg.prefix.clone()),
        &template::queue_specs(specs),
    )
    .await
    .context(
        "declaring the broker topology (if a queue exists with other arguments, from an \
             older version: `orderflow topology --delete` removes this prefix's queues once they \
             are drained)",
    )?;
    let _ = conn.close(200, "topology declared".into()).await;
    Ok(())
}

/// Removes this prefix's queues, dead-letter queues and exchanges (tests and throwaway
/// stacks; never needed in normal operation, and never done by the bootstrap).
pub async fn delete_topology(cfg: &Config, specs: &[FunctionSpec]) -> anyhow::Result<()> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let names = shared::topology::Names::new(cfg.prefix.clone());
    let conn = shared::publisher::connect(&cfg.amqp_url, "topology").await?;
    let ch = conn.create_channel().await?;
    for spec in template::queue_specs(specs) {
        for q in spec.broker_queues() {
            for name in [names.queue(&q), names.dead_letter_queue(&q)] {
                ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await?;
            }
        }
        if spec.shards > 1 {
            ch.exchange_delete(
                names.shard_exchange(&spec.queue).as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await?;
        }
    }
    for ex in [names.events_exchange(), names.dead_letter_exchange()] {
        ch.exchange_delete(ex.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
    }
    let _ = conn.close(200, "topology deleted".into()).await;
    Ok(())
}
