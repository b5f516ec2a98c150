//! The per-execution-environment state every function is built from: pools and clients
//! created once, cheap to clone, all connecting lazily and reconnecting after failures.

use crate::cache::Redis;
use crate::config::Config;
use crate::publisher::{AmqpPublisher, Publish};
use crate::session::Sessions;
use crate::topology::Names;
use sqlx::PgPool;
use std::sync::Arc;

#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub redis: Redis,
    pub publisher: Arc<dyn Publish>,
    pub names: Names,
    pub sessions: Sessions,
    pub limiter: crate::ratelimit::RateLimiter,
}

impl Context {
    /// Builds clients without connecting: nothing here can fail on an outage.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let pool = crate::db::pool(&config.database_url, config.db_pool_size)?;
        let publisher: Arc<dyn Publish> = Arc::new(AmqpPublisher::new(config.amqp_url.clone()));
        Self::with_publisher(config, pool, publisher)
    }

    /// Same, with a given pool and publisher (tests pass a recording publisher).
    pub fn with_publisher(
        config: Config,
        pool: PgPool,
        publisher: Arc<dyn Publish>,
    ) -> anyhow::Result<Self> {
        let redis = Redis::new(&config.redis_url)?;
        let names = Names::new(config.prefix.clone());
        let sessions = Sessions::new(
            redis.clone(),
            names.clone(),
            config.session_ttl,
            config.session_max_lifetime,
        );
        let limiter = crate::ratelimit::RateLimiter::new(
            redis.clone(),
            names.clone(),
            config.rate_limits.clone(),
        );
        Ok(Context {
            config: Arc::new(config),
            pool,
            redis,
            publisher,
            names,
            sessions,
            limiter,
        })
    }

    /// A batch runner for `handler` on this context.
    pub fn batch_runner<H: crate::runner::MessageHandler>(
        &self,
        handler: H,
    ) -> crate::runner::BatchRunner<H> {
        crate::runner::BatchRunner {
            handler,
            pool: self.pool.clone(),
            publisher: self.publisher.clone(),
            names: self.names.clone(),
            encoding: self.config.wire_encoding,
            faults: self.config.faults.clone(),
        }
    }

    /// Publishes committed outbox events now (HTTP handlers and schedules call this after
    /// their commit). A failure leaves the rows for the relay and is only logged: the
    /// state change is durable either way.
    pub async fn publish_committed(&self, schema: &str, events: &[crate::Envelope]) -> bool {
        if events.is_empty() {
            return true;
        }
        if self
            .config
            .faults
            .fires(crate::faults::Fault::Crash, schema)
        {
            // As if the process died between the commit and the publish: the relay sends.
            return false;
        }
        let msgs: Vec<_> = events
            .iter()
            .map(|e| crate::publisher::OutMessage::event(&self.names, e, self.config.wire_encoding))
            .collect();
        let ids: Vec<uuid::Uuid> = events.iter().map(crate::Envelope::event_uuid).collect();
        let (published, ok) = match self.publisher.publish(&msgs).await {
            Ok(()) => (ids, true),
            Err(e) => {
                tracing::warn!(error = %e, count = events.len(), "publish failed; outbox relay will send later");
                // An unroutable publish still delivered the others: only the rest waits.
                (e.routed(&ids), false)
            }
        };
        if let Err(e) = crate::db::outbox_mark_published(&self.pool, schema, &published).await {
            tracing::warn!(error = %e, "published but could not mark outbox rows; the relay may re-send (consumers dedupe)");
        }
        ok
    }
}
