//! `orderflow seed`: the catalog and stock, from a JSON file or the demo catalog.

use anyhow::Context as _;
use inventory::ProductSeed;
use shared::context::Context;
use std::time::Duration;

/// The demo catalog (shared with the bootstrap custom resource).
pub fn demo_catalog() -> Vec<ProductSeed> {
    ops::catalog::demo()
}

pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Vec<ProductSeed>> {
    match file {
        None => Ok(demo_catalog()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!("{} is not a catalog: expected [{{\"product_id\",\"name\",\"price_cents\",\"currency\",\"stock\"}}]", path.display())
            })
        }
    }
}

/// Seeds inventory through the back office's own writes (`inventory::upsert_products`: a
/// product is created or patched, then its stock set by an adjustment with a deterministic
/// id), so it publishes what `POST /admin/products` and a stock adjustment do
/// (`product.updated`, `stock.adjusted`, `stock.low`). Then, when `wait` is given, waits
/// until the order service's price list has caught up through the broker.
pub async fn seed(
    ctx: &Context,
    products: &[ProductSeed],
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    inventory::upsert_products(ctx, products).await?;
    let Some(limit) = wait else { return Ok(()) };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let prices = order::catalog_prices(&ctx.pool).await?;
        let synced = products.iter().all(|p| {
            prices
                .iter()
                .any(|(id, price)| *id == p.product_id && *price == p.price_cents)
        });
        if synced {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the order service's catalog did not catch up within {limit:?} (is `orderflow up` running?)"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
