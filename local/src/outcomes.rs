//! Outcomes against inputs: what each order must have ended as, given only what was sent
//! (its payment token, its products and quantities) and the stock it was placed against.
//! One pure checker for the demo and the chaos suite, so a referee that only counts final
//! states (which a fault path cancelling every order would satisfy) cannot creep back.
//!
//! The rules follow the saga (`order::domain::saga`): a card the gateway declines never
//! confirms; an order is cancelled `out_of_stock` only if it holds a scarce product (one
//! whose total demand in the run exceeds its stock), and then that wins over a declined
//! card; an order with a good card and only plentiful products confirms. `expired` is never
//! right here: the deadline is minutes, the runs settle in seconds, so an expired order is
//! one whose saga lost an input.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What the client sent for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub payment_token: String,
    /// `(product_id, quantity)` per line.
    pub items: Vec<(String, i64)>,
}

impl Inputs {
    /// Whether the simulated gateway approves this token (the gateway's own rule).
    pub fn card_approves(&self) -> bool {
        payment::gateway::SimulatedGateway::decide(&self.payment_token).is_ok()
    }

    fn quantity_of(&self, product: &str) -> i64 {
        self.items
            .iter()
            .filter(|(p, _)| p == product)
            .map(|(_, q)| q)
            .sum()
    }
}

impl fmt::Display for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.payment_token)?;
        for (p, q) in &self.items {
            write!(f, ", {q} x {p}")?;
        }
        Ok(())
    }
}

/// An accepted order and its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub order_id: String,
    pub inputs: Inputs,
}

/// An order's state after the run settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Final {
    pub status: String,
    pub reason: Option<String>,
}

impl Final {
    pub fn label(&self) -> String {
        match &self.reason {
            Some(r) => format!("{} ({r})", self.status),
            None => self.status.clone(),
        }
    }

    fn class(&self) -> Option<Class> {
        match (self.status.as_str(), self.reason.as_deref()) {
            ("CONFIRMED", None) => Some(Class::Confirmed),
            ("CANCELLED", Some("payment_declined")) => Some(Class::PaymentDeclined),
            ("CANCELLED", Some("out_of_stock")) => Some(Class::OutOfStock),
            _ => None,
        }
    }
}

/// The final states an order may rightly end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Confirmed,
    PaymentDeclined,
    OutOfStock,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Confirmed, Class::PaymentDeclined, Class::OutOfStock];

    pub fn label(self) -> &'static str {
        match self {
            Class::Confirmed => "CONFIRMED",
            Class::PaymentDeclined => "CANCELLED (payment_declined)",
            Class::OutOfStock => "CANCELLED (out_of_stock)",
        }
    }
}

/// The verdict: orders per final state, and every order or class that went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub states: BTreeMap<String, usize>,
    pub violations: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// One line in the manner of `orderflow verify`, the first violations below it.
    pub fn line(&self) -> String {
        let orders: usize = self.states.values().sum();
        let states: Vec<String> = self
            .states
            .iter()
            .map(|(label, n)| format!("{n} {label}"))
            .collect();
        verdict_line(
            "final states match the inputs (card, products, stock)",
            &format!("{orders} orders: {}", states.join(", ")),
            &self.violations,
        )
    }
}

/// A verdict in the layout of `orderflow verify`: `ok`/`FAIL`, name, summary, then up to
/// ten violations, one per line.
pub fn verdict_line(name: &str, summary: &str, violations: &[String]) -> String {
    let mark = if violations.is_empty() {
        "ok  "
    } else {
        "FAIL"
    };
    let mut s = format!("{mark} {name}: {summary}");
    for v in violations.iter().take(10) {
        s.push_str(&format!("\n       - {v}"));
    }
    if violations.len() > 10 {
        s.push_str(&format!("\n       ... and {} more", violations.len() - 10));
    }
    s
}

/// Products whose demand over all the run's orders exceeds their stock: only orders
/// holding one of them can run out. A product without a stock figure counts as scarce.
pub fn scarce<'a>(
    orders: impl IntoIterator<Item = &'a Inputs>,
    stock: &BTreeMap<String, i64>,
) -> BTreeSet<String> {
    let mut demand: BTreeMap<&str, i64> = BTreeMap::new();
    for i in orders {
        for (product, q) in &i.items {
            *demand.entry(product.as_str()).or_default() += q;
        }
    }
    demand
        .into_iter()
        .filter(|(product, d)| stock.get(*product).is_none_or(|s| d > s))
        .map(|(product, _)| product.to_string())
        .collect()
}

/// The classes that must occur whatever the timing: a good card on plentiful products
/// confirms, a declined card on plentiful products is declined, and when good cards alone
/// ask for more of a product than its stock, confirmed orders keep what they reserved, so
/// at least one of those orders runs out.
pub fn guaranteed<'a>(
    orders: impl IntoIterator<Item = &'a Inputs> + Clone,
    stock: &BTreeMap<String, i64>,
) -> BTreeSet<Class> {
    let scarce = scarce(orders.clone(), stock);
    let holds_scarce = |i: &Inputs| i.items.iter().any(|(p, _)| scarce.contains(p));
    let mut classes = BTreeSet::new();
    for i in orders.clone() {
        if !holds_scarce(i) {
            classes.insert(if i.card_approves() {
                Class::Confirmed
            } else {
                Class::PaymentDeclined
            });
        }
    }
    let overdrawn = scarce.iter().any(|product| {
        let wanted: i64 = orders
            .clone()
            .into_iter()
            .filter(|i| i.card_approves())
            .map(|i| i.quantity_of(product))
            .sum();
        wanted > stock.get(product).copied().unwrap_or(0)
    });
    if overdrawn {
        classes.insert(Class::OutOfStock);
    }
    classes
}

/// Checks every placed order's final state against its inputs, and that each class in
/// `expect` occurred at least once. Orders in `finals` that were never placed are reported
/// too: the run must account for every order it finds.
pub fn check(
    placed: &[Placed],
    stock: &BTreeMap<String, i64>,
    finals: &BTreeMap<String, Final>,
    expect: &BTreeSet<Class>,
) -> Report {
    let scarce = scarce(placed.iter().map(|p| &p.inputs), stock);
    let mut report = Report::default();
    let mut seen: BTreeSet<Class> = BTreeSet::new();
    for p in placed {
        let Some(fin) = finals.get(&p.order_id) else {
            report.violations.push(format!(
                "order {} ({}) was accepted but has no final state",
                p.order_id, p.inputs
            ));
            continue;
        };
        *report.states.entry(fin.label()).or_default() += 1;
        let holds_scarce = p.inputs.items.iter().any(|(pr, _)| scarce.contains(pr));
        let approves = p.inputs.card_approves();
        let wrong = match fin.class() {
            Some(Class::Confirmed) if !approves => Some("a declined card never confirms"),
            Some(Class::PaymentDeclined) if approves => Some("its card approves"),
            Some(Class::OutOfStock) if !holds_scarce => {
                Some("it holds only products with stock for every order of the run")
            }
            Some(class) => {
                seen.insert(class);
                None
            }
            None if fin.status == "PENDING" => Some("it never settled"),
            None if fin.reason.as_deref() == Some("expired") => Some(
                "the deadline is minutes away from a run that settles in seconds: its saga lost an input",
            ),
            None => Some("that is not a state the saga produces"),
        };
        if let Some(why) = wrong {
            report.violations.push(format!(
                "order {} ({}) ended {}: {why}",
                p.order_id,
                p.inputs,
                fin.label()
            ));
        }
    }
    let ids: BTreeSet<&str> = placed.iter().map(|p| p.order_id.as_str()).collect();
    for (id, fin) in finals {
        if !ids.contains(id.as_str()) {
            report.violations.push(format!(
                "order {id} ended {} but was never placed by this run",
                fin.label()
            ));
        }
    }
    for class in expect {
        if !seen.contains(class) {
            report.violations.push(format!(
                "no order ended {} although the inputs call for it",
                class.label()
            ));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, token: &str, items: &[(&str, i64)]) -> Placed {
        Placed {
            order_id: id.into(),
            inputs: Inputs {
                payment_token: token.into(),
                items: items.iter().map(|(p, q)| (p.to_string(), *q)).collect(),
            },
        }
    }

    fn fin(status: &str, reason: Option<&str>) -> Final {
        Final {
            status: status.into(),
            reason: reason.map(str::to_string),
        }
    }

    /// Plenty of mugs, two limited drippers, and orders covering every class.
    fn run() -> (Vec<Placed>, BTreeMap<String, i64>) {
        let placed = vec![
            order("good", "tok_visa", &[("mug", 1)]),
            order("declined", "tok_chargeDeclined", &[("mug", 2)]),
            order(
                "poor",
                "tok_chargeDeclinedInsufficientFunds",
                &[("mug", 1), ("limited", 1)],
            ),
            order("lucky", "tok_visa", &[("limited", 1)]),
            order("late", "tok_mastercard", &[("mug", 1), ("limited", 2)]),
        ];
        let stock = [("mug".to_string(), 100), ("limited".to_string(), 2)].into();
        (placed, stock)
    }

    fn clean() -> BTreeMap<String, Final> {
        [
            ("good", fin("CONFIRMED", None)),
            ("declined", fin("CANCELLED", Some("payment_declined"))),
            ("poor", fin("CANCELLED", Some("out_of_stock"))),
            ("lucky", fin("CONFIRMED", None)),
            ("late", fin("CANCELLED", Some("out_of_stock"))),
        ]
        .into_iter()
        .map(|(id, f)| (id.to_string(), f))
        .collect()
    }

    #[test]
    fn a_clean_run_reports_nothing() {
        let (placed, stock) = run();
        let expect = guaranteed(placed.iter().map(|p| &p.inputs), &stock);
        assert_eq!(expect, Class::ALL.into());
        let report = check(&placed, &stock, &clean(), &expect);
        assert_eq!(report.violations, Vec::<String>::new());
        assert_eq!(report.states["CANCELLED (out_of_stock)"], 2);
    }

    #[test]
    fn a_declined_card_on_a_scarce_product_may_end_either_way() {
        let (placed, stock) = run();
        let mut finals = clean();
        finals.insert("poor".into(), fin("CANCELLED", Some("payment_declined")));
        assert!(check(&placed, &stock, &finals, &Class::ALL.into()).ok());
    }

    #[test]
    fn a_fault_path_that_cancelled_every_order_is_reported() {
        let (placed, stock) = run();
        let finals: BTreeMap<String, Final> = placed
            .iter()
            .map(|p| (p.order_id.clone(), fin("CANCELLED", Some("out_of_stock"))))
            .collect();
        let report = check(&placed, &stock, &finals, &Class::ALL.into());
        let v = report.violations.join("\n");
        assert!(v.contains("order good (tok_visa, 1 x mug) ended CANCELLED (out_of_stock)"));
        assert!(v.contains("order declined"));
        assert!(v.contains("no order ended CONFIRMED"));
        assert!(v.contains("no order ended CANCELLED (payment_declined)"));
    }

    #[test]
    fn a_declined_card_that_confirmed_is_reported() {
        let (placed, stock) = run();
        let mut finals = clean();
        finals.insert("declined".into(), fin("CONFIRMED", None));
        let report = check(&placed, &stock, &finals, &BTreeSet::new());
        assert_eq!(
            report.violations,
            vec![
                "order declined (tok_chargeDeclined, 2 x mug) ended CONFIRMED: a declined card never confirms"
            ]
        );
    }

    #[test]
    fn a_good_card_declined_an_expired_a_pending_and_a_lost_order_are_reported() {
        let (placed, stock) = run();
        let mut finals = clean();
        finals.insert("good".into(), fin("CANCELLED", Some("payment_declined")));
        finals.insert("lucky".into(), fin("CANCELLED", Some("expired")));
        finals.insert("late".into(), fin("PENDING", None));
        finals.remove("declined");
        finals.insert("stranger".into(), fin("CONFIRMED", None));
        let v = check(&placed, &stock, &finals, &BTreeSet::new()).violations;
        assert_eq!(v.len(), 5, "{v:#?}");
        assert!(v[0].contains("good") && v[0].contains("its card approves"));
        assert!(v[1].contains("declined") && v[1].contains("no final state"));
        assert!(v[2].contains("lucky") && v[2].contains("lost an input"));
        assert!(v[3].contains("late") && v[3].contains("never settled"));
        assert!(v[4].contains("stranger") && v[4].contains("never placed"));
    }

    #[test]
    fn a_class_the_inputs_call_for_must_occur() {
        let (placed, stock) = run();
        let mut finals = clean();
        // Both limited orders confirmed: the checker blames the missing out-of-stock class
        // (the conservation of stock is verify's to check).
        finals.insert("late".into(), fin("CONFIRMED", None));
        finals.insert("poor".into(), fin("CANCELLED", Some("payment_declined")));
        let v = check(&placed, &stock, &finals, &Class::ALL.into()).violations;
        assert_eq!(
            v,
            vec!["no order ended CANCELLED (out_of_stock) although the inputs call for it"]
        );
    }

    #[test]
    fn only_what_the_inputs_make_certain_is_guaranteed() {
        let stock: BTreeMap<String, i64> = [("mug".to_string(), 100), ("limited".into(), 2)].into();
        // Declined cards alone overdraw the limited product: nothing is certain to run out,
        // and no good card on plentiful products means no certain confirmation.
        let placed = [
            order("a", "tok_chargeDeclined", &[("limited", 2)]),
            order("b", "tok_chargeDeclined", &[("limited", 2)]),
            order("c", "tok_visa", &[("limited", 1)]),
        ];
        assert_eq!(
            scarce(placed.iter().map(|p| &p.inputs), &stock),
            ["limited".to_string()].into()
        );
        assert_eq!(
            guaranteed(placed.iter().map(|p| &p.inputs), &stock),
            BTreeSet::new()
        );
        // The same demand within stock: nothing is scarce, so every order is decided by
        // its card alone.
        let placed = [order("a", "tok_visa", &[("limited", 2)])];
        assert_eq!(
            scarce(placed.iter().map(|p| &p.inputs), &stock),
            BTreeSet::new()
        );
        assert_eq!(
            guaranteed(placed.iter().map(|p| &p.inputs), &stock),
            [Class::Confirmed].into()
        );
    }
}
