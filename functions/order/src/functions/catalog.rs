//! `order-catalog` (queue order-catalog <- product.updated): keeps the price list (and
//! which products are discontinued) current, never moving a product back to an older version.

use crate::pg::catalog::{CatalogEntry, upsert_if_newer};
use async_trait::async_trait;
use shared::contracts::{Payload, ProductUpdated};
use shared::runner::{Applied, MessageHandler};
use shared::{Envelope, Function, HandleError};
use sqlx::PgConnection;
use std::sync::Arc;

pub struct CatalogHandler;

pub fn catalog(ctx: &shared::context::Context) -> Arc<dyn Function> {
    Arc::new(shared::lambda::RmqFunction(
        ctx.batch_runner(CatalogHandler),
    ))
}

/// The contract's message as a catalog entry, or why it can never be one.
fn entry(p: &ProductUpdated) -> Result<CatalogEntry, HandleError> {
    if p.product_id.trim().is_empty() {
        return Err(HandleError::permanent(
            "product.updated without a product_id",
        ));
    }
    if p.price_cents < 0 {
        return Err(HandleError::permanent(format!(
            "product {} has a negative price",
            p.product_id
        )));
    }
    if p.currency.trim().is_empty() {
        return Err(HandleError::permanent(format!(
            "product {} has an invalid currency {:?}",
            p.product_id, p.currency
        )));
    }
    let version = i64::try_from(p.version).map_err(|_| {
        HandleError::permanent(format!(
            "product {} has an out-of-range version",
            p.product_id
        ))
    })?;
    Ok(CatalogEntry {
        product_id: p.product_id.clone(),
        name: p.name.clone(),
        price_cents: p.price_cents,
        currency: p.currency.clone(),
        version,
        discontinued: p.discontinued,
    })
}

#[async_trait]
impl MessageHandler for CatalogHandler {
    type Effect = ();

    fn name(&self) -> &'static str {
        "order-catalog"
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<()>, HandleError> {
        let Payload::ProductUpdated(p) = env.payload() else {
            return Err(HandleError::unexpected(env));
        };
        let entry = entry(p)?;
        let changed = upsert_if_newer(tx, &entry).await?;
        if !changed {
            tracing::info!(product_id = %entry.product_id, version = entry.version, "stale product.updated ignored");
        }
        Ok(Applied::nothing())
    }
}
