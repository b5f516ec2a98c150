//! The invariants of DESIGN.md section 2 as pure functions of a `Snapshot`: each returns
//! its `Check` (violations and a summary), and each has unit tests that break the snapshot
//! the way a bug would and expect the violation.
//!
//! No check restates a database constraint: each compares two records that a bug could make
//! disagree (the shelf and the stock ledger, the orders and the payments ledger, the ledger
//! and the gateway's own record, a notification and the event announcing it).

use super::snapshot::Snapshot;
use super::{Check, Expect};
use std::collections::{BTreeMap, BTreeSet};

/// Every check, in the order `verify` prints them.
pub fn all(s: &Snapshot, expect: &Expect) -> Vec<Check> {
    vec![
        orders_final(s),
        fulfilment_recorded(s),
        stock_conserved(s),
        money_settled(s),
        ledger_reconciled(s),
        notifications_delivered(s),
        nothing_lost(s, expect),
        settled(s),
        cache_agrees(s),
    ]
}

/// Invariant 1: After quiescence every order is final: CONFIRMED, SHIPPED or DELIVERED
/// (without a reason), or CANCELLED with a known reason (the customer's own cancel among
/// them).
pub fn orders_final(s: &Snapshot) -> Check {
    let mut v = Vec::new();
    let (mut kept, mut cancelled) = (0, 0);
    for o in &s.orders {
        match (o.status.as_str(), o.reason.as_deref()) {
            ("CONFIRMED" | "SHIPPED" | "DELIVERED", None) => kept += 1,
            (
                "CANCELLED",
                Some("out_of_stock" | "payment_declined" | "expired" | "customer_cancelled"),
            ) => cancelled += 1,
            ("PENDING", _) => v.push(format!("order {} is still PENDING", o.order_id)),
            (status, reason) => v.push(format!(
                "order {} is {status} with reason {reason:?}",
                o.order_id
            )),
        }
    }
    Check {
        name: "every order is CONFIRMED, SHIPPED, DELIVERED or CANCELLED",
        summary: format!(
            "{} orders, {kept} confirmed, shipped or delivered, {cancelled} cancelled",
            s.orders.len()
        ),
        violations: v,
    }
}

/// After the decision: a SHIPPED or DELIVERED order has its shipment (carrier, tracking
/// number, when it shipped, and when it was delivered for DELIVERED), an order that never
/// shipped has none; every refund an admin asked for reached `refunded` or `failed` once
/// quiet, and the refunds of an order that did not fail never sum above its total.
pub fn fulfilment_recorded(s: &Snapshot) -> Check {
    let mut v = Vec::new();
    let (mut shipped, mut refunds) = (0, 0);
    for o in &s.orders {
        let id = o.order_id;
        let shipment = o.carrier.is_some() && o.tracking_number.is_some() && o.shipped_at.is_some();
        match o.status.as_str() {
            "SHIPPED" | "DELIVERED" => {
                shipped += 1;
                if !shipment {
                    v.push(format!(
                        "order {id} is {} but has no complete shipment (carrier, tracking number, shipped at)",
                        o.status
                    ));
                }
                match (o.status.as_str(), o.delivered_at.is_some()) {
                    ("DELIVERED", false) => {
                        v.push(format!("order {id} is DELIVERED but has no delivery time"))
                    }
                    ("SHIPPED", true) => {
                        v.push(format!("order {id} is SHIPPED but has a delivery time"))
                    }
                    _ => {}
                }
            }
            status => {
                if o.shipped_at.is_some() || o.delivered_at.is_some() {
                    v.push(format!("order {id} is {status} but has a shipment"));
                }
            }
        }
        let mut given = 0i64;
        for r in &o.refunds {
            refunds += 1;
            match r.status.as_str() {
                "refunded" => given += r.amount_cents,
                "failed" => {}
                "requested" if r.kind == "admin" => {
                    given += r.amount_cents;
                    v.push(format!(
                        "refund {} of order {id} is still requested",
                        r.refund_id
                    ));
                }
                other => v.push(format!(
                    "refund {} of order {id} ({}) is {other}",
                    r.refund_id, r.kind
                )),
            }
        }
        if given > o.total_cents {
            v.push(format!(
                "order {id}: refunds of {given} exceed its total of {}",
                o.total_cents
            ));
        }
    }
    Check {
        name: "shipped orders have their shipment, every refund settled within the total",
        summary: format!("{shipped} shipped or delivered, {refunds} refunds"),
        violations: v,
    }
}

/// What the stock ledger says happened to one order's units of one product.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Units {
    /// Taken from the shelf and not given back (reserve less release and refund_release).
    taken: i64,
    /// Left with a carrier (`ship` movements).
    shipped: i64,
    /// Put back on sale by a refund before shipping (`refund_release`).
    refunded_held: i64,
    /// Put back on sale by a refund after shipping (`return`).
    returned: i64,
}

impl Units {
    /// Held by the order now: taken and not shipped yet.
    fn held(self) -> i64 {
        self.taken - self.shipped
    }
}

/// Per order, per product, its units by the stock ledger.
fn units_by_order(s: &Snapshot) -> BTreeMap<&str, BTreeMap<&str, Units>> {
    let mut by: BTreeMap<&str, BTreeMap<&str, Units>> = BTreeMap::new();
    for m in &s.stock.movements {
        let Some(order) = m.order_id.as_deref() else {
            continue;
        };
        let u = by
            .entry(order)
            .or_default()
            .entry(m.product_id.as_str())
            .or_default();
        match m.kind.as_str() {
            "reserve" | "release" => u.taken -= m.delta,
            "refund_release" => {
                u.taken -= m.delta;
                u.refunded_held += m.delta;
            }
            "ship" => u.shipped += m.quantity,
            "return" => u.returned += m.delta,
            _ => {}
        }
    }
    by
}

/// The non-zero quantities of `units` picked by `f`.
fn figures<'a>(
    units: &BTreeMap<&'a str, Units>,
    f: impl Fn(Units) -> i64,
) -> BTreeMap<&'a str, i64> {
    units
        .iter()
        .map(|(p, u)| (*p, f(*u)))
        .filter(|(_, q)| *q != 0)
        .collect()
}

/// Invariant 2: Stock is conserved and never negative, judged by the stock ledger. Per
/// product: replaying every movement gives the shelf figure without ever going below zero,
/// and what came in (initial stock, adjustments, returns) is what is on the shelf plus what
/// live orders hold plus what shipped; the shelf's `reserved` is what orders hold. Per order,
/// its units match its state: a CONFIRMED order holds its lines (less what a refund
/// restocked), a SHIPPED or DELIVERED one holds nothing and shipped its lines (less that),
/// a CANCELLED one holds and shipped nothing; no refund returns more than shipped.
pub fn stock_conserved(s: &Snapshot) -> Check {
    let mut v = Vec::new();
    let mut balance: BTreeMap<&str, i64> = BTreeMap::new();
    let mut inflow: BTreeMap<&str, i64> = BTreeMap::new();
    let mut went_negative: BTreeSet<&str> = BTreeSet::new();
    let known: BTreeSet<&str> = s
        .stock
        .products
        .iter()
        .map(|p| p.product_id.as_str())
        .collect();
    for m in &s.stock.movements {
        // (well-formed, needs an order)
        let (ok, needs_order) = match m.kind.as_str() {
            "reserve" => (m.delta < 0 && m.quantity == 0, true),
            "release" | "refund_release" | "return" => (m.delta > 0 && m.quantity == 0, true),
            "ship" => (m.delta == 0 && m.quantity > 0, true),
            "restock" => (m.quantity == 0, false),
            "adjust" => (m.delta != 0 && m.quantity == 0, false),
            other => {
                v.push(format!(
                    "movement {} has unknown kind {other}",
                    m.movement_id
                ));
                continue;
            }
        };
        if !ok || needs_order != m.order_id.is_some() {
            v.push(format!(
                "movement {} ({} {} of {}) is malformed",
                m.movement_id, m.kind, m.delta, m.product_id
            ));
        }
        if !known.contains(m.product_id.as_str()) {
            v.push(format!(
                "movement {} is for unknown product {}",
                m.movement_id, m.product_id
            ));
        }
        if matches!(m.kind.as_str(), "restock" | "adjust" | "return") {
            *inflow.entry(m.product_id.as_str()).or_default() += m.delta;
        }
        let b = balance.entry(m.product_id.as_str()).or_default();
        *b += m.delta;
        if *b < 0 && went_negative.insert(m.product_id.as_str()) {
            v.push(format!(
                "{}: stock went to {} at movement {} (oversold)",
                m.product_id, b, m.movement_id
            ));
        }
    }
    let units = units_by_order(s);
    let (mut held, mut shipped): (BTreeMap<&str, i64>, BTreeMap<&str, i64>) = Default::default();
    for per_product in units.values() {
        for (p, u) in per_product {
            *held.entry(p).or_default() += u.held();
            *shipped.entry(p).or_default() += u.shipped;
        }
    }
    for p in &s.stock.products {
        let id = p.product_id.as_str();
        let ledger = balance.get(id).copied().unwrap_or(0);
        if ledger != p.available {
            v.push(format!(
                "{id}: shelf says {} available, the stock ledger says {ledger}",
                p.available
            ));
        }
        if p.available < 0 {
            v.push(format!("{id}: available {} is negative", p.available));
        }
        let (came_in, h, out) = (
            inflow.get(id).copied().unwrap_or(0),
            held.get(id).copied().unwrap_or(0),
            shipped.get(id).copied().unwrap_or(0),
        );
        if came_in != p.available + h + out {
            v.push(format!(
                "{id}: received {came_in} (stock, adjustments, returns) but {} available + {h} held + {out} shipped = {}",
                p.available,
                p.available + h + out
            ));
        }
        if p.reserved != h {
            v.push(format!(
                "{id}: the shelf says {} reserved, live orders hold {h} by the stock ledger",
                p.reserved
            ));
        }
    }
    let orders: BTreeMap<String, &order::OrderRow> = s
        .orders
        .iter()
        .map(|o| (o.order_id.to_string(), o))
        .collect();
    let reservations: BTreeMap<&str, &inventory::ReservationRow> = s
        .stock
        .reservations
        .iter()
        .map(|r| (r.order_id.as_str(), r))
        .collect();
    let none = BTreeMap::new();
    let (mut units_held, mut units_shipped) = (0, 0);
    for o in &s.orders {
        let id = o.order_id.to_string();
        let mine = units.get(id.as_str()).unwrap_or(&none);
        let has = figures(mine, Units::held);
        let sent = figures(mine, |u| u.shipped);
        units_held += has.values().sum::<i64>();
        units_shipped += sent.values().sum::<i64>();
        // The order's lines less what refunds restocked before shipping.
        let mut want: BTreeMap<&str, i64> = BTreeMap::new();
        for (p, q) in &o.items {
            *want.entry(p.as_str()).or_default() += q;
        }
        for (p, u) in mine {
            *want.entry(p).or_default() -= u.refunded_held;
        }
        want.retain(|_, q| *q != 0);
        let reservation = reservations.get(id.as_str());
        let reservation_is = |status: &str| reservation.is_some_and(|r| r.status == status);
        let reservation_status = reservation.map_or("missing", |r| r.status.as_str());
        for (p, u) in mine {
            if u.returned > u.shipped {
                v.push(format!(
                    "order {id}: {} of {p} returned by refunds, only {} shipped",
                    u.returned, u.shipped
                ));
            }
            if u.held() < 0 {
                v.push(format!(
                    "order {id} shipped {} of {p} but only held {}",
                    u.shipped, u.taken
                ));
            }
        }
        match o.status.as_str() {
            "CONFIRMED" => {
                if has != want {
                    v.push(format!(
                        "order {id} is CONFIRMED and holds {has:?} by the stock ledger, not {want:?}"
                    ));
                }
                if !sent.is_empty() {
                    v.push(format!("order {id} is CONFIRMED but shipped {sent:?}"));
                }
                if !reservation_is("reserved") {
                    v.push(format!(
                        "order {id} is CONFIRMED but its reservation is {reservation_status}"
                    ));
                }
                if let Some(r) = reservation {
                    let listed: BTreeMap<&str, i64> = r
                        .items
                        .iter()
                        .filter(|(_, q)| *q != 0)
                        .map(|(p, q)| (p.as_str(), *q))
                        .collect();
                    if r.status == "reserved" && listed != has {
                        v.push(format!(
                            "order {id}: its reservation lists {listed:?}, the stock ledger says it holds {has:?}"
                        ));
                    }
                }
            }
            "SHIPPED" | "DELIVERED" => {
                if !has.is_empty() {
                    v.push(format!(
                        "order {id} is {} but still holds {has:?} by the stock ledger",
                        o.status
                    ));
                }
                if sent != want {
                    v.push(format!(
                        "order {id} is {} and shipped {sent:?} by the stock ledger, not {want:?}",
                        o.status
                    ));
                }
                if !reservation_is("shipped") {
                    v.push(format!(
                        "order {id} is {} but its reservation is {reservation_status}",
                        o.status
                    ));
                }
            }
            "CANCELLED" => {
                if !has.is_empty() {
                    v.push(format!(
                        "order {id} is CANCELLED but still holds {has:?} by the stock ledger"
                    ));
                }
                if !sent.is_empty() {
                    v.push(format!("order {id} is CANCELLED but shipped {sent:?}"));
                }
                if reservation_is("reserved") || reservation_is("shipped") {
                    v.push(format!(
                        "order {id} is CANCELLED but its reservation is still {reservation_status}"
                    ));
                }
            }
            _ => {}
        }
    }
    for id in units.keys() {
        if !orders.contains_key(*id) {
            v.push(format!("stock moved for unknown order {id}"));
        }
    }
    Check {
        name: "stock conserved by the ledger (shelf = replayed movements, never negative; received = available + held + shipped; each order holds or shipped what its state says)",
        summary: format!(
            "{} products, {} movements replayed, {units_held} units held by live orders, {units_shipped} shipped",
            s.stock.products.len(),
            s.stock.movements.len()
        ),
        violations: v,
    }
}

/// One money movement, as the ledger or the gateway records it.
struct Call<'a> {
    kind: &'a str,
    outcome: &'a str,
    amount: i64,
}

/// The states in which an order keeps what it bought, paid for by one capture of its total
/// (less what refunds gave back).
const PAID_STATES: [&str; 3] = ["CONFIRMED", "SHIPPED", "DELIVERED"];

/// Violations of one order's calls (from one record, `source`): at most one approved
/// authorization, capture and void; refunds never above the capture; a CONFIRMED, SHIPPED
/// or DELIVERED order captured once for its total; a CANCELLED one keeping nothing
/// (never captured, or refunded in full); no approved authorization left open on a final
/// order. Returns what was captured and refunded.
fn order_money(
    source: &str,
    order: &order::OrderRow,
    calls: &[Call<'_>],
    v: &mut Vec<String>,
) -> (i64, i64) {
    let id = order.order_id;
    let count = |kind: &str, outcome: &str| {
        calls
            .iter()
            .filter(|c| c.kind == kind && c.outcome == outcome)
            .count()
    };
    let (auths, captures, voids) = (
        count("authorize", "approved"),
        count("capture", "succeeded"),
        count("void", "succeeded"),
    );
    for (what, n) in [
        ("authorized", auths),
        ("captured", captures),
        ("voided", voids),
    ] {
        if n > 1 {
            v.push(format!("{source}: order {id} was {what} {n} times"));
        }
    }
    let sum = |kind: &str| -> i64 {
        calls
            .iter()
            .filter(|c| c.kind == kind && c.outcome == "succeeded")
            .map(|c| c.amount)
            .sum()
    };
    let (captured, refunded) = (sum("capture"), sum("refund"));
    if refunded > captured {
        v.push(format!(
            "{source}: order {id} was refunded {refunded}, more than the {captured} captured"
        ));
    }
    match order.status.as_str() {
        status if PAID_STATES.contains(&status) => {
            if captures == 0 {
                v.push(format!(
                    "{source}: order {id} is {status} but was never captured"
                ));
            } else if captured != order.total_cents {
                v.push(format!(
                    "{source}: order {id} captured {captured}, its total is {}",
                    order.total_cents
                ));
            }
        }
        "CANCELLED" if captured != refunded => v.push(format!(
            "{source}: order {id} is CANCELLED but keeps {} ({captured} captured, {refunded} refunded)",
            captured - refunded
        )),
        _ => {}
    }
    if order.status != "PENDING" && auths > 0 && captures + voids == 0 {
        v.push(format!(
            "{source}: order {id} is {} with its authorization left open (neither captured nor voided)",
            order.status
        ));
    }
    (captured, refunded)
}

/// Invariant 3 (DESIGN.md section 9): per order, captured - refunded is what the customer
/// owes for what they keep, never negative: a CONFIRMED, SHIPPED or DELIVERED order has
/// exactly one capture of its total (less its refunds), a CANCELLED one keeps nothing (a
/// cancel after capture is refunded in full), no final order keeps an open authorization,
/// and nothing is authorized, captured or voided twice: judged on the payments ledger and,
/// when there is one, on the gateway's own record (which sees calls whose transaction
/// rolled back).
pub fn money_settled(s: &Snapshot) -> Check {
    let mut v = Vec::new();
    let mut ledger: BTreeMap<&str, Vec<Call<'_>>> = BTreeMap::new();
    for r in &s.payments.ledger {
        ledger.entry(r.order_id.as_str()).or_default().push(Call {
            kind: &r.kind,
            outcome: &r.outcome,
            amount: r.amount_cents,
        });
    }
    let mut gateway: BTreeMap<&str, Vec<Call<'_>>> = BTreeMap::new();
    for c in s.payments.gateway.iter().flatten() {
        gateway.entry(c.order_id.as_str()).or_default().push(Call {
            kind: &c.kind,
            outcome: &c.outcome,
            amount: c.amount_cents,
        });
    }
    let payments: BTreeMap<&str, &payment::PaymentRow> = s
        .payments
        .payments
        .iter()
        .map(|p| (p.order_id.as_str(), p))
        .collect();
    let (mut captured, mut refunded) = (0, 0);
    let known: BTreeSet<String> = s.orders.iter().map(|o| o.order_id.to_string()).collect();
    for o in &s.orders {
        let id = o.order_id.to_string();
        let calls = ledger.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let (c, r) = order_money("ledger", o, calls, &mut v);
        captured += c;
        refunded += r;
        if s.payments.gateway.is_some() {
            let calls = gateway.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            order_money("gateway", o, calls, &mut v);
        }
        let row = payments.get(id.as_str());
        if let Some(p) = row.filter(|p| p.refunded_cents != r) {
            v.push(format!(
                "order {id}: its payment says {} refunded, the ledger {r}",
                p.refunded_cents
            ));
        }
        let st = row.map(|p| p.status.as_str());
        if PAID_STATES.contains(&o.status.as_str()) && st != Some("captured") {
            v.push(format!(
                "order {id} is {} but its payment is {}",
                o.status,
                st.unwrap_or("missing")
            ));
        }
    }
    for order_id in ledger.keys().chain(gateway.keys()) {
        if !known.contains(*order_id) {
            v.push(format!("money moved for unknown order {order_id}"));
        }
    }
    Check {
        name: "captured - refunded = what each order keeps (its total, less refunds, when paid; nothing when cancelled), refunds never above captures, no authorization left open",
        summary: format!(
            "{} ledger rows{}, {captured} minor units captured, {refunded} refunded",
            s.payments.ledger.len(),
            match &s.payments.gateway {
                Some(g) => format!(", {} gateway calls", g.len()),
                None => String::new(),
            }
        ),
        violations: v,
    }
}

/// Invariant 3b: Every gateway call is in the payments ledger once, as the gateway answered it (a
/// refund under the gateway's own refund id), and every ledger row is a call the gateway
/// saw: a call made in a transaction that rolled back and was never made again with the
/// same key shows here.
pub fn ledger_reconciled(s: &Snapshot) -> Check {
    let name = "every gateway call is in the payments ledger, as the gateway answered it";
    let mut v = Vec::new();
    // A refund made without the gateway's id of it cannot be traced at the provider.
    for r in &s.payments.ledger {
        if r.kind == "refund" && r.outcome == "succeeded" && r.gateway_refund_id.is_none() {
            v.push(format!(
                "ledger refund {} of order {} has no gateway refund id",
                r.idempotency_key, r.order_id
            ));
        }
    }
    let Some(gateway) = &s.payments.gateway else {
        return Check {
            name,
            summary: "no gateway record to reconcile with (a real provider keeps its own)".into(),
            violations: v,
        };
    };
    let ledger: BTreeMap<&str, &payment::LedgerRow> = s
        .payments
        .ledger
        .iter()
        .map(|r| (r.idempotency_key.as_str(), r))
        .collect();
    let mut repeats = 0;
    let mut seen = BTreeSet::new();
    for c in gateway {
        seen.insert(c.idempotency_key.as_str());
        repeats += c.calls - 1;
        match ledger.get(c.idempotency_key.as_str()) {
            None => v.push(format!(
                "gateway {} {} of order {} ({}) is not in the ledger",
                c.kind, c.outcome, c.order_id, c.idempotency_key
            )),
            Some(r) if r.gateway_refund_id != c.refund_id => v.push(format!(
                "ledger names refund {:?} for {}, the gateway {:?}",
                r.gateway_refund_id, c.idempotency_key, c.refund_id
            )),
            Some(r)
                if r.kind != c.kind
                    || r.outcome != c.outcome
                    || r.amount_cents != c.amount_cents =>
            {
                v.push(format!(
                    "ledger says {} {} {} for {}, the gateway {} {} {}",
                    r.kind,
                    r.outcome,
                    r.amount_cents,
                    c.idempotency_key,
                    c.kind,
                    c.outcome,
                    c.amount_cents
                ))
            }
            Some(_) => {}
        }
    }
    for r in &s.payments.ledger {
        // Rows carried over by the ledger's migration predate the gateway's record.
        if !seen.contains(r.idempotency_key.as_str()) && !r.idempotency_key.starts_with("migrated:")
        {
            v.push(format!(
                "ledger row {} ({} of order {}) has no gateway call",
                r.idempotency_key, r.kind, r.order_id
            ));
        }
    }
    Check {
        name,
        summary: format!(
            "{} gateway calls, {} ledger rows, {repeats} repeated keys answered from the gateway's record",
            gateway.len(),
            s.payments.ledger.len()
        ),
        violations: v,
    }
}

/// The refund ids of the refunds the ledger says were made, per order: the key of a
/// refund is `refund:<refund id>` (`payment::gateway::call_key`), and each made refund
/// published one `payment.refunded`.
fn refunds_made(s: &Snapshot) -> BTreeMap<&str, Vec<&str>> {
    let mut made: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &s.payments.ledger {
        if r.kind == "refund" && r.outcome == "succeeded" {
            let refund_id = r
                .idempotency_key
                .strip_prefix("refund:")
                .unwrap_or(&r.idempotency_key);
            made.entry(r.order_id.as_str()).or_default().push(refund_id);
        }
    }
    made
}

/// Invariant 4: Every state change has its one customer notification, each delivered, each
/// announced by exactly one `notification.sent`: received, then confirmed (for an order
/// that was captured, which a confirmation causes; at most once for an order its customer
/// cancelled, whose cancel may have overtaken the capture), shipped (SHIPPED or DELIVERED),
/// delivered (DELIVERED) or cancelled (CANCELLED), and one order_refunded per refund the
/// payments ledger made (per `payment.refunded`), under its refund id.
pub fn notifications_delivered(s: &Snapshot) -> Check {
    let mut v = Vec::new();
    let mut kinds: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut refund_notes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut announced: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &s.notifications.sent_events {
        *announced.entry(id.as_str()).or_default() += 1;
    }
    let mut delivered = 0;
    let mut ids = BTreeSet::new();
    for n in &s.notifications.notifications {
        kinds
            .entry(n.order_id.as_str())
            .or_default()
            .push(n.kind.as_str());
        if n.kind == "order_refunded" {
            refund_notes
                .entry(n.order_id.as_str())
                .or_default()
                .push(n.ref_id.as_str());
        }
        let id = n.notification_id.to_string();
        match announced.get(id.as_str()).copied().unwrap_or(0) {
            1 => {}
            k => v.push(format!(
                "notification {} ({} of order {}) was announced {k} times",
                id, n.kind, n.order_id
            )),
        }
        ids.insert(id);
        if n.status == "delivered" {
            delivered += 1;
        } else {
            v.push(format!(
                "notification {} of order {} is {}, not delivered",
                n.kind, n.order_id, n.status
            ));
        }
    }
    for id in announced.keys() {
        if !ids.contains(*id) {
            v.push(format!("notification.sent for unknown notification {id}"));
        }
    }
    let known: BTreeSet<String> = s.orders.iter().map(|o| o.order_id.to_string()).collect();
    for order_id in kinds.keys() {
        if !known.contains(*order_id) {
            v.push(format!("notification for unknown order {order_id}"));
        }
    }
    let captured: BTreeSet<&str> = s
        .payments
        .ledger
        .iter()
        .filter(|r| r.kind == "capture" && r.outcome == "succeeded")
        .map(|r| r.order_id.as_str())
        .collect();
    let refunds = refunds_made(s);
    for o in &s.orders {
        let id = o.order_id.to_string();
        let got: Vec<&str> = kinds.get(id.as_str()).cloned().unwrap_or_default();
        let mut want = vec!["order_received"];
        match o.status.as_str() {
            "CONFIRMED" => want.push("order_confirmed"),
            "SHIPPED" => want.extend(["order_confirmed", "order_shipped"]),
            "DELIVERED" => want.extend(["order_confirmed", "order_shipped", "order_delivered"]),
            "CANCELLED" => {
                // A customer's cancel of a confirmed order: the confirmation was sent first
                // (and the capture made, unless the cancel overtook it and voided instead).
                let overtaken = o.reason.as_deref() == Some("customer_cancelled")
                    && got.iter().filter(|g| **g == "order_confirmed").count() == 1;
                if captured.contains(id.as_str()) || overtaken {
                    want.push("order_confirmed");
                }
                want.push("order_cancelled");
            }
            _ => continue,
        }
        for k in &want {
            match got.iter().filter(|g| *g == k).count() {
                1 => {}
                n => v.push(format!(
                    "order {id} ({}) has {n} {k} notifications",
                    o.status
                )),
            }
        }
        for g in got
            .iter()
            .filter(|g| !want.contains(g) && **g != "order_refunded")
        {
            v.push(format!("order {id} is {} but was notified {g}", o.status));
        }
        let mut made: Vec<&str> = refunds.get(id.as_str()).cloned().unwrap_or_default();
        let mut noted: Vec<&str> = refund_notes.get(id.as_str()).cloned().unwrap_or_default();
        made.sort_unstable();
        noted.sort_unstable();
        if made != noted {
            v.push(format!(
                "order {id} was refunded {made:?} but notified of refunds {noted:?}"
            ));
        }
    }
    Check {
        name: "every state change and refund has exactly one delivered notification",
        summary: format!(
            "{} notifications, {delivered} delivered, {} announced",
            s.notifications.notifications.len(),
            s.notifications.sent_events.len()
        ),
        violations: v,
    }
}

/// Invariant 5: No event lost: every outbox row published; every dead-letter queue present; dead
/// letters only when invalid input was sent, and each with its reason.
pub fn nothing_lost(s: &Snapshot, expect: &Expect) -> Check {
    let mut v = Vec::new();
    let mut unpublished = 0;
    for (schema, n, age) in &s.outbox {
        unpublished += n;
        if *n > 0 {
            v.push(format!(
                "{schema}: {n} outbox rows unpublished, oldest {age:.1} s"
            ));
        }
    }
    let mut dead = 0;
    for d in &s.dead_letters {
        match &d.letters {
            Err(e) => v.push(format!("{}: {e}", d.queue)),
            Ok(letters) => {
                dead += letters.len();
                let unexplained = letters.iter().filter(|r| r.is_none()).count();
                if unexplained > 0 {
                    v.push(format!(
                        "{}: {unexplained} dead letters without a reason (the broker gave up on them: not invalid input)",
                        d.queue
                    ));
                }
                if !expect.invalid_input && unexplained < letters.len() {
                    let first = letters.iter().flatten().next().cloned().unwrap_or_default();
                    v.push(format!(
                        "{}: {} parked although no invalid input was sent (first reason: {first})",
                        d.queue,
                        letters.len() - unexplained
                    ));
                }
            }
        }
    }
    Check {
        name: "no event lost (outboxes published, dead letters only for invalid input)",
        summary: format!(
            "{unpublished} unpublished, {dead} dead letters in {} dead-letter queues{}",
            s.dead_letters.len(),
            if expect.invalid_input {
                " (invalid input was sent)"
            } else {
                ""
            }
        ),
        violations: v,
    }
}

/// The system is settled: no message ready or unacknowledged in any function queue.
pub fn settled(s: &Snapshot) -> Check {
    let mut v = Vec::new();
    let (mut ready, mut unacked) = (0, 0);
    for q in &s.queues {
        match &q.depth {
            Err(e) => v.push(format!("{}: {e}", q.queue)),
            Ok(d) => {
                ready += d.ready;
                if d.ready > 0 {
                    v.push(format!("{}: {} messages ready", q.queue, d.ready));
                }
                match &d.unacked {
                    Ok(0) => {}
                    Ok(n) => {
                        unacked += n;
                        v.push(format!(
                            "{}: {n} messages unacknowledged (in flight)",
                            q.queue
                        ));
                    }
                    Err(e) => v.push(format!("{}: unacknowledged count unknown ({e})", q.queue)),
                }
            }
        }
    }
    Check {
        name: "settled (no message ready or in flight in any function queue)",
        summary: format!(
            "{} queues, {ready} ready, {unacked} unacknowledged",
            s.queues.len()
        ),
        violations: v,
    }
}

/// Invariant 6: The Redis stock cache agrees with Postgres on every entry it holds. Expired entries
/// cannot be stale; the summary says how many entries were actually compared.
pub fn cache_agrees(s: &Snapshot) -> Check {
    let mut v = Vec::new();
    let mut compared = 0;
    match &s.cache {
        Err(e) => v.push(format!("could not read the stock cache: {e}")),
        Ok(entries) => {
            let db: BTreeMap<&str, &inventory::ProductFigure> = s
                .stock
                .products
                .iter()
                .map(|p| (p.product_id.as_str(), p))
                .collect();
            for (id, hit) in entries {
                let Some(hit) = hit else { continue };
                compared += 1;
                match db.get(id.as_str()) {
                    None => v.push(format!("stock cache holds unknown product {id}")),
                    Some(p) if p.available != hit.available || p.version != hit.version => {
                        v.push(format!(
                            "stock cache of {id}: cache says available {} (version {}), Postgres says {} (version {})",
                            hit.available, hit.version, p.available, p.version
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Check {
        name: "Redis stock cache agrees with Postgres",
        summary: format!(
            "{compared} cached entries compared, {} products not cached (expired or never read)",
            s.stock.products.len().saturating_sub(compared)
        ),
        violations: v,
    }
}

#[cfg(test)]
mod tests;
