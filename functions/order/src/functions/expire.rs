//! `order-expire` (schedule rate(1 minute)): cancels PENDING orders past their deadline
//! through the same saga step as every other input.

use crate::apply::{SagaTiming, apply_input};
use crate::domain::saga::Input;
use crate::pg::orders;
use shared::context::Context;
use shared::{Envelope, Function};
use std::sync::Arc;

/// Orders handled per run; the next run takes the rest.
pub const EXPIRE_BATCH: i64 = 500;

pub fn expire(ctx: &Context) -> Arc<dyn Function> {
    let ctx = ctx.clone();
    Arc::new(shared::lambda::ScheduleFunction(move || {
        let ctx = ctx.clone();
        async move {
            let expired = expire_due(&ctx).await?;
            // Every minute on Lambda: orders by state as EMF, where nothing polls them.
            crate::record_order_gauges(&ctx.pool).await?;
            Ok(serde_json::json!({ "expired": expired }))
        }
    }))
}

/// Cancels (reason `expired`) up to 500 PENDING orders past their deadline, in one
/// transaction with their `order.cancelled` events, then publishes them. Returns how many.
pub async fn expire_due(ctx: &Context) -> anyhow::Result<usize> {
    let mut tx = ctx.pool.begin().await?;
    let due = orders::lock_due_for_expiry(&mut tx, EXPIRE_BATCH).await?;
    let mut events: Vec<Envelope> = Vec::with_capacity(due.len());
    let mut timings = Vec::with_capacity(due.len());
    for order in &due {
        if let Some(decided) = apply_input(&mut tx, order, Input::Expired, None).await? {
            tracing::info!(order_id = %order.order_id, event_id = %decided.event.event_id, "pending order expired");
            events.push(decided.event);
            timings.push(decided.timing);
        }
    }
    shared::db::outbox_insert(&mut tx, crate::SCHEMA, &events).await?;
    tx.commit().await?;
    timings.into_iter().for_each(SagaTiming::observe);
    ctx.publish_committed(crate::SCHEMA, &events).await;
    Ok(events.len())
}
