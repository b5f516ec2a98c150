//! The state `verify` judges, read once: every service's rows in one repeatable-read
//! transaction (one consistent point in time), the broker through `crate::broker`, and the
//! stock cache entries of every product.

use crate::broker::{DeadLetterProbe, Probe, QueueProbe};
use inventory::domain::StockFigure;
use shared::context::Context;

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub orders: Vec<order::OrderRow>,
    pub stock: inventory::StockAudit,
    pub payments: payment::PaymentAudit,
    pub notifications: notification::NotificationAudit,
    /// `(schema, unpublished rows, age of the oldest in seconds)` per outbox.
    pub outbox: Vec<(String, i64, f64)>,
    pub queues: Vec<QueueProbe>,
    pub dead_letters: Vec<DeadLetterProbe>,
    /// Each product's cache entry (`None` when absent), or why the cache could not be read.
    pub cache: Result<Vec<(String, Option<StockFigure>)>, String>,
}

/// An empty system: no rows, no queues, an empty cache (tests build on it).
impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            orders: vec![],
            stock: Default::default(),
            payments: Default::default(),
            notifications: Default::default(),
            outbox: vec![],
            queues: vec![],
            dead_letters: vec![],
            cache: Ok(vec![]),
        }
    }
}

/// Reads the snapshot. `queues` are the template's queue names (unprefixed).
pub async fn read(ctx: &Context, queues: &[String]) -> anyhow::Result<Snapshot> {
    let mut tx = ctx.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let orders = order::orders_in(&mut tx).await?;
    let stock = inventory::stock_audit(&mut tx).await?;
    let mut payments = payment::audit(&mut tx).await?;
    if !payment::gateway::uses_simulator(&ctx.config) {
        // A real provider's record lives with the provider: nothing here to reconcile with.
        payments.gateway = None;
    }
    let notifications = notification::audit(&mut tx).await?;
    let mut outbox = Vec::new();
    for schema in crate::registry::OUTBOX_SCHEMAS {
        let (n, age) = shared::db::outbox_backlog(&mut *tx, schema).await?;
        outbox.push((schema.to_string(), n, age));
    }
    tx.commit().await?;

    let probe = Probe::open(ctx).await?;
    let (names, dlqs) = crate::broker::queue_names(ctx, queues);
    let queue_states = probe.queues(&names).await;
    let dead_letters = probe.dead_letters(&dlqs).await;
    probe.close().await;

    let ids: Vec<String> = stock
        .products
        .iter()
        .map(|p| p.product_id.clone())
        .collect();
    let cache = inventory::RedisStockCache::from_context(ctx);
    // A connection that broke earlier (Redis restarted) fails its first command and is
    // re-established on it: one more try reads the cache as it is now.
    let hits = match cache.get_many(&ids).await {
        Ok(hits) => Ok(hits),
        Err(_) => cache.get_many(&ids).await,
    };
    let cache = hits
        .map(|hits| ids.iter().cloned().zip(hits).collect())
        .map_err(|e| e.to_string());
    Ok(Snapshot {
        orders,
        stock,
        payments,
        notifications,
        outbox,
        queues: queue_states,
        dead_letters,
        cache,
    })
}
