//! What the chaos suite orders, decided before it starts: a fixed mix of cards and baskets
//! such that every outcome class must occur, and the catalog it is placed against. Knowing
//! each order's inputs up front is what lets the referee judge each final state.

use crate::outcomes::Inputs;
use inventory::ProductSeed;

const PLENTIFUL: [&str; 4] = ["sku-coffee", "sku-mug", "sku-grinder", "sku-kettle"];
const SCARCE: &str = "sku-limited";

/// Order `i` of the run. In every ten: a declined card on plentiful products (3), a
/// declined card on the scarce product too, where out of stock may win (6), a good card on
/// the scarce product (1), good cards on plentiful products (the rest).
pub fn order(i: usize) -> Inputs {
    let payment_token = match i % 10 {
        3 => "tok_chargeDeclined",
        6 => "tok_chargeDeclinedInsufficientFunds",
        _ => "tok_visa",
    };
    let mut items = vec![(PLENTIFUL[i % 4].to_string(), 1 + (i % 3) as i64)];
    if i % 5 == 1 {
        items.push((SCARCE.to_string(), 1));
    }
    Inputs {
        payment_token: payment_token.into(),
        items,
    }
}

pub fn orders(n: usize) -> Vec<Inputs> {
    (0..n).map(order).collect()
}

/// The demo catalog, the scarce product stocked at a third of what good cards ask of it:
/// it runs out at any order count, and stays scarce however long the run.
pub fn catalog(orders: &[Inputs]) -> Vec<ProductSeed> {
    let wanted: i64 = orders
        .iter()
        .filter(|o| o.card_approves())
        .flat_map(|o| o.items.iter())
        .filter(|(p, _)| p == SCARCE)
        .map(|(_, q)| q)
        .sum();
    let mut products = crate::seed::demo_catalog();
    for p in &mut products {
        if p.product_id == SCARCE {
            p.stock = i32::try_from(wanted / 3).unwrap_or(i32::MAX);
        }
    }
    products
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcomes::{Class, guaranteed};
    use std::collections::{BTreeMap, BTreeSet};

    fn stock(catalog: &[ProductSeed]) -> BTreeMap<String, i64> {
        catalog
            .iter()
            .map(|p| (p.product_id.clone(), i64::from(p.stock)))
            .collect()
    }

    #[test]
    fn from_four_orders_on_the_mix_makes_every_outcome_certain() {
        for n in [4, 10, 37, 300, 2000] {
            let plan = orders(n);
            let all: BTreeSet<Class> = Class::ALL.into();
            assert_eq!(
                guaranteed(&plan, &stock(&catalog(&plan))),
                all,
                "{n} orders"
            );
        }
        let plan = orders(3);
        assert!(!guaranteed(&plan, &stock(&catalog(&plan))).contains(&Class::PaymentDeclined));
    }

    #[test]
    fn three_hundred_orders_meet_the_demo_stock_of_the_scarce_product() {
        let plan = orders(300);
        let limited = catalog(&plan)
            .into_iter()
            .find(|p| p.product_id == SCARCE)
            .map(|p| p.stock);
        assert_eq!(limited, Some(10));
    }
}
