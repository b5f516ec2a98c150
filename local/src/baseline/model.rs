//! What the real flow does per order, as data: which event each queue function publishes
//! when it consumes which event. The baseline's stand-ins follow this table, and the bench
//! walks it through the template's bindings to say how many deliveries and publishes one
//! order costs, so that the flow's measured counts can be checked against it.
//!
//! The table mirrors the handlers (`functions/*/src/functions*`) on the paths the bench
//! drives: stock is never short (the bench seeds a billion of each product), and a card is
//! either approved or declined. A declined payment is never authorised, so settling its
//! cancellation voids nothing (no `payment.voided`); the reservation it had is released.

use shared::contracts::keys;
use shared::topology::topic_matches;
use std::collections::BTreeMap;

/// The two ways an order of the bench ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    /// Payment declined: the saga cancels.
    Declined,
}

/// The saga's inputs: it decides once it holds both.
pub const SAGA_INPUTS: [&str; 2] = [keys::STOCK_RESERVED, keys::PAYMENT_PROCESSED];

/// Events `function` publishes when it consumes `event` for an order heading to `outcome`,
/// the saga excepted (it publishes its decision on its second input, see `walk`).
pub fn reaction(function: &str, event: &str, outcome: Outcome) -> &'static [&'static str] {
    use Outcome::*;
    match (function, event, outcome) {
        ("inventory-reserve", keys::ORDER_CREATED, _) => &[keys::STOCK_RESERVED],
        ("payment-process", keys::ORDER_CREATED, _) => &[keys::PAYMENT_PROCESSED],
        (
            "notification-send",
            keys::ORDER_CREATED | keys::ORDER_CONFIRMED | keys::ORDER_CANCELLED,
            _,
        ) => &[keys::NOTIFICATION_SENT],
        ("payment-settle", keys::ORDER_CONFIRMED, Confirmed) => &[keys::PAYMENT_CAPTURED],
        ("inventory-release", keys::ORDER_CANCELLED, Declined) => &[keys::STOCK_RELEASED],
        _ => &[],
    }
}

/// The saga's decision for an outcome.
pub fn decision(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Confirmed => keys::ORDER_CONFIRMED,
        Outcome::Declined => keys::ORDER_CANCELLED,
    }
}

/// One queue function as the template wires it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub function: String,
    pub queue: String,
    pub routing_keys: Vec<String>,
}

/// Every queue function of the template.
pub fn consumers(specs: &[crate::template::FunctionSpec]) -> Vec<Consumer> {
    specs
        .iter()
        .flat_map(|f| {
            f.triggers.iter().filter_map(|t| match t {
                crate::template::Trigger::Mq {
                    queue,
                    routing_keys,
                    ..
                } => Some(Consumer {
                    function: f.binary.clone(),
                    queue: queue.clone(),
                    routing_keys: routing_keys.clone(),
                }),
                _ => None,
            })
        })
        .collect()
}

/// Deliveries (per queue) and publishes (per routing key) of one order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderWork {
    pub deliveries: BTreeMap<String, u64>,
    pub publishes: BTreeMap<String, u64>,
}

impl OrderWork {
    pub fn deliveries_total(&self) -> u64 {
        self.deliveries.values().sum()
    }
    pub fn publishes_total(&self) -> u64 {
        self.publishes.values().sum()
    }
}

/// Follows one order from its `order.created` through the bindings and the reaction table.
pub fn walk(consumers: &[Consumer], outcome: Outcome) -> OrderWork {
    let mut work = OrderWork::default();
    let mut pending = vec![keys::ORDER_CREATED];
    let mut saga_inputs = 0;
    while let Some(event) = pending.pop() {
        *work.publishes.entry(event.to_string()).or_default() += 1;
        for c in consumers
            .iter()
            .filter(|c| c.routing_keys.iter().any(|k| topic_matches(k, event)))
        {
            *work.deliveries.entry(c.queue.clone()).or_default() += 1;
            if c.function == "order-saga" && SAGA_INPUTS.contains(&event) {
                saga_inputs += 1;
                if saga_inputs == SAGA_INPUTS.len() {
                    pending.push(decision(outcome));
                }
            } else {
                pending.extend(reaction(&c.function, event, outcome));
            }
        }
    }
    work
}

/// Expected deliveries and publishes per order for a mix with `declined` of `orders` declined.
pub fn expected_per_order(consumers: &[Consumer], orders: u64, declined: u64) -> (f64, f64) {
    if orders == 0 {
        return (0.0, 0.0);
    }
    let ok = walk(consumers, Outcome::Confirmed);
    let no = walk(consumers, Outcome::Declined);
    let confirmed = orders.saturating_sub(declined);
    let deliveries = confirmed * ok.deliveries_total() + declined * no.deliveries_total();
    let publishes = confirmed * ok.publishes_total() + declined * no.publishes_total();
    (
        deliveries as f64 / orders as f64,
        publishes as f64 / orders as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_consumers() -> Vec<Consumer> {
        let specs = crate::template::parse(crate::template::EMBEDDED).expect("template parses");
        consumers(&specs)
    }

    // Measured on a run of the real flow (300 orders, 15 declined), inbox rows per consumer:
    // reserve 300, payment-process 300, notification-send 600, order-saga 600, payment-settle
    // 300, inventory-release 15, order-timeline 2100; outbox rows 2100 (7 per order).
    #[test]
    fn a_confirmed_order_costs_fourteen_deliveries_and_seven_publishes() {
        let work = walk(&template_consumers(), Outcome::Confirmed);
        assert_eq!(work.deliveries_total(), 14, "{work:?}");
        assert_eq!(work.publishes_total(), 7, "{work:?}");
        assert_eq!(work.deliveries["order-timeline"], 7);
        assert_eq!(work.deliveries["order-saga"], 2);
        assert_eq!(work.deliveries["notification-send"], 2);
        assert_eq!(work.publishes[keys::NOTIFICATION_SENT], 2);
    }

    #[test]
    fn a_declined_order_also_releases_its_stock() {
        let work = walk(&template_consumers(), Outcome::Declined);
        assert_eq!(work.deliveries_total(), 15, "{work:?}");
        assert_eq!(work.publishes_total(), 7, "{work:?}");
        assert_eq!(work.deliveries["inventory-release"], 1);
        assert_eq!(work.publishes.get(keys::PAYMENT_CAPTURED), None);
        assert_eq!(work.publishes[keys::STOCK_RELEASED], 1);
    }

    #[test]
    fn the_mix_weights_both_paths() {
        let (d, p) = expected_per_order(&template_consumers(), 300, 15);
        assert!((d - 14.05).abs() < 1e-9, "{d}");
        assert!((p - 7.0).abs() < 1e-9, "{p}");
        assert_eq!(expected_per_order(&template_consumers(), 0, 0), (0.0, 0.0));
    }

    #[test]
    fn a_binding_that_changes_in_the_template_changes_the_count() {
        let mut cs = template_consumers();
        cs.retain(|c| c.function != "order-timeline");
        assert_eq!(walk(&cs, Outcome::Confirmed).deliveries_total(), 7);
    }
}
