//! Pricing an order from the catalog copy: unit prices and totals come from the catalog,
//! never from the client, and an order is in exactly one currency.

use super::request::ValidOrder;
use std::collections::HashMap;

/// A catalog entry as pricing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub price_cents: i64,
    pub currency: String,
    /// No longer sold: an order naming it is refused.
    pub discontinued: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedOrder {
    pub lines: Vec<PricedLine>,
    pub total_cents: i64,
    pub currency: String,
}

/// Why the catalog cannot price an order (a 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("unknown product(s): {}", .0.join(", "))]
    UnknownProducts(Vec<String>),
    #[error("the products are priced in different currencies: {}", .0.join(", "))]
    MixedCurrency(Vec<String>),
    #[error("the order total is too large")]
    Overflow,
    #[error("product(s) no longer sold: {}", .0.join(", "))]
    Discontinued(Vec<String>),
}

pub fn price(
    order: &ValidOrder,
    catalog: &HashMap<String, Price>,
) -> Result<PricedOrder, PricingError> {
    let unknown: Vec<String> = order
        .items
        .iter()
        .filter(|l| !catalog.contains_key(l.product_id.as_str()))
        .map(|l| l.product_id.as_str().to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(PricingError::UnknownProducts(unknown));
    }
    let discontinued: Vec<String> = order
        .items
        .iter()
        .filter(|l| {
            catalog
                .get(l.product_id.as_str())
                .is_some_and(|p| p.discontinued)
        })
        .map(|l| l.product_id.as_str().to_string())
        .collect();
    if !discontinued.is_empty() {
        return Err(PricingError::Discontinued(discontinued));
    }
    let mut lines = Vec::with_capacity(order.items.len());
    let mut currencies: Vec<String> = Vec::new();
    let mut total: i64 = 0;
    for line in &order.items {
        let Some(p) = catalog.get(line.product_id.as_str()) else {
            continue;
        };
        if !currencies.contains(&p.currency) {
            currencies.push(p.currency.clone());
        }
        let amount = p
            .price_cents
            .checked_mul(i64::from(line.quantity.get()))
            .ok_or(PricingError::Overflow)?;
        total = total.checked_add(amount).ok_or(PricingError::Overflow)?;
        lines.push(PricedLine {
            product_id: line.product_id.as_str().to_string(),
            quantity: line.quantity.get(),
            unit_price_cents: p.price_cents,
        });
    }
    match currencies.as_slice() {
        [currency] => Ok(PricedOrder {
            lines,
            total_cents: total,
            currency: currency.clone(),
        }),
        _ => Err(PricingError::MixedCurrency(currencies)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::request::{LineRequest, OrderRequest};

    fn order(lines: &[(&str, i64)]) -> ValidOrder {
        ValidOrder::try_from(OrderRequest {
            items: lines
                .iter()
                .map(|(p, q)| LineRequest {
                    product_id: p.to_string(),
                    quantity: *q,
                })
                .collect(),
            payment_token: "tok_visa".into(),
            shipping_address: None,
        })
        .expect("valid")
    }

    fn catalog(entries: &[(&str, i64, &str)]) -> HashMap<String, Price> {
        entries
            .iter()
            .map(|(id, cents, cur)| {
                (
                    id.to_string(),
                    Price {
                        price_cents: *cents,
                        currency: cur.to_string(),
                        discontinued: false,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn totals_come_from_catalog_prices() {
        let priced = price(
            &order(&[("a", 2), ("b", 3)]),
            &catalog(&[("a", 1999, "EUR"), ("b", 500, "EUR")]),
        )
        .expect("priced");
        assert_eq!(priced.total_cents, 2 * 1999 + 3 * 500);
        assert_eq!(priced.currency, "EUR");
        assert_eq!(priced.lines[0].unit_price_cents, 1999);
    }

    #[test]
    fn unknown_products_are_all_named() {
        let err = price(
            &order(&[("a", 1), ("x", 1), ("y", 1)]),
            &catalog(&[("a", 1, "EUR")]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PricingError::UnknownProducts(vec!["x".into(), "y".into()])
        );
    }

    #[test]
    fn discontinued_products_are_all_named_and_refused() {
        let mut c = catalog(&[("a", 1, "EUR"), ("b", 1, "EUR"), ("c", 1, "EUR")]);
        for id in ["b", "c"] {
            c.get_mut(id).expect("entry").discontinued = true;
        }
        let err = price(&order(&[("a", 1), ("b", 1), ("c", 2)]), &c).unwrap_err();
        assert_eq!(
            err,
            PricingError::Discontinued(vec!["b".into(), "c".into()])
        );
        assert!(price(&order(&[("a", 1)]), &c).is_ok());
    }

    #[test]
    fn mixed_currencies_are_refused() {
        let err = price(
            &order(&[("a", 1), ("b", 1)]),
            &catalog(&[("a", 1, "EUR"), ("b", 1, "USD")]),
        )
        .unwrap_err();
        assert!(matches!(err, PricingError::MixedCurrency(_)));
    }

    #[test]
    fn an_overflowing_total_is_refused() {
        let err = price(
            &order(&[("a", 1000)]),
            &catalog(&[("a", i64::MAX / 10, "EUR")]),
        )
        .unwrap_err();
        assert_eq!(err, PricingError::Overflow);
    }
}
