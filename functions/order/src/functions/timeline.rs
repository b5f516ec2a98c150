//! `order-timeline` (queue order-timeline <- `#`, every event): records each event of an
//! order (type, id, cause, trace, when it occurred) in `orders.timeline`, the source of the
//! `timeline` of `GET /orders/{id}` and of `orderflow timeline`. Events about no order
//! (`product.updated`) are acknowledged and not recorded.

use async_trait::async_trait;
use shared::runner::{Applied, MessageHandler};
use shared::{Envelope, Function, HandleError};
use sqlx::PgConnection;
use std::sync::Arc;

pub const TIMELINE: &str = "order-timeline";

pub struct TimelineHandler;

pub fn timeline(ctx: &shared::context::Context) -> Arc<dyn Function> {
    Arc::new(shared::lambda::RmqFunction(
        ctx.batch_runner(TimelineHandler),
    ))
}

#[async_trait]
impl MessageHandler for TimelineHandler {
    type Effect = ();

    fn name(&self) -> &'static str {
        TIMELINE
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    fn applies_in_bulk(&self) -> bool {
        true
    }

    /// Every event of a chunk in one insert: the timeline only appends, idempotently, and
    /// sees every event of every order, so it is the busiest consumer.
    async fn apply_chunk(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope],
    ) -> Result<Applied<()>, HandleError> {
        crate::pg::timeline::record_many(tx, events).await?;
        Ok(Applied::nothing())
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<()>, HandleError> {
        if !env.correlation_id.is_empty() {
            crate::pg::timeline::record(tx, env).await?;
        }
        Ok(Applied::nothing())
    }
}
