//! Every function of every service, by binary name, and every service's migrations: what
//! lets the runner host the whole system in one process.

use shared::Constructor;

/// Template functions the runner does not host: the bootstrap custom resource is invoked
/// by CloudFormation on a deploy; `up` runs the same `ops::prepare` itself.
pub const NOT_HOSTED: [&str; 1] = ["ops-bootstrap"];

/// All functions of all services.
pub fn all() -> Vec<(&'static str, Constructor)> {
    [
        identity::FUNCTIONS,
        inventory::FUNCTIONS,
        payment::FUNCTIONS,
        notification::FUNCTIONS,
        order::FUNCTIONS,
        ops::FUNCTIONS,
    ]
    .into_iter()
    .flatten()
    .copied()
    .collect()
}

pub fn find(binary: &str) -> Option<Constructor> {
    all()
        .into_iter()
        .find(|(name, _)| *name == binary)
        .map(|(_, c)| c)
}

/// Runs every service's migrations (each in its own schema).
pub async fn migrate_all(database_url: &str) -> anyhow::Result<()> {
    ops::prepare::migrate_all(database_url).await
}

/// Schemas that keep an outbox.
pub const OUTBOX_SCHEMAS: [&str; 5] = [
    "identity",
    "inventory",
    "payments",
    "notifications",
    "orders",
];
