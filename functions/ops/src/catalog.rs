//! The demo catalog, seeded by `orderflow seed` and, when asked, by the bootstrap.

use inventory::ProductSeed;

/// Plenty of most things, and one scarce product so that some orders run out of stock.
pub fn demo() -> Vec<ProductSeed> {
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
