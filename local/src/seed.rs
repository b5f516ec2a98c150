//! `orderflow seed`: the catalog and stock, from a JSON file or the demo catalog.

use anyhow::Context as _;
use inventory::ProductSeed;
use shared::context::Context;
use std::time::Duration;

/// The demo catalog: plenty of most things, and one scarce product so that some orders
/// run out of stock.
pub fn demo_catalog() -> Vec<ProductSeed> {
    let p = |id: &str, name: &str, price: i64, stock: i32| ProductSeed {
        product_id: id.into(),
        name: name.into(),
        price_cents: price,
        currency: "EUR".into(),
        stock,
    };
    vec![
        p(
            "sku-coffee",
            "Single-origin coffee beans 1 kg",
            2490,
            100_000,
        ),
        p("sku-mug", "Stoneware mug", 1200, 100_000),
        p("sku-grinder", "Burr grinder", 8900, 100_000),
        p("sku-kettle", "Gooseneck kettle", 5900, 100_000),
        p(
            "sku-limited",
            "Limited edition dripper (numbered)",
            14900,
            10,
        ),
    ]
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

/// Seeds inventory (which publishes `product.updated`), then, when `wait` is given, waits
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
