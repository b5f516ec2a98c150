//! An order's timeline: its events in causal order (every event after the event that
//! caused it, otherwise by when it occurred; clocks of different services may disagree by a
//! few milliseconds, so time alone could put a reply before its request), and what each
//! event says in a few words.

use shared::contracts::{CancelReason, NotificationKind, Payload, PaymentStatus, RejectReason};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// What causal ordering needs to know of an event.
pub trait Causal {
    fn event_id(&self) -> String;
    /// The causing event's id; empty for the first event of a chain.
    fn causation_id(&self) -> String;
    /// Milliseconds since the epoch.
    fn occurred_at_ms(&self) -> i64;
}

/// Sorts `events` so that each comes after its cause (when the cause is among them), the
/// earliest available event first. Events whose cause is unknown start a chain of their own;
/// a causation cycle (corrupt data) is broken by time rather than dropping events.
pub fn causal_order<T: Causal>(events: Vec<T>) -> Vec<T> {
    let ids: HashSet<String> = events.iter().map(Causal::event_id).collect();
    let mut children: HashMap<String, Vec<usize>> = HashMap::new();
    let mut ready = BinaryHeap::new();
    for (i, e) in events.iter().enumerate() {
        let (id, cause) = (e.event_id(), e.causation_id());
        let key = Reverse((e.occurred_at_ms(), id.clone(), i));
        if ids.contains(&cause) && cause != id {
            children.entry(cause).or_default().push(i);
        } else {
            ready.push(key);
        }
    }
    let mut slots: Vec<Option<T>> = events.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    while let Some(Reverse((_, id, i))) = ready.pop().or_else(|| earliest_left(&slots)) {
        let Some(event) = slots[i].take() else {
            continue;
        };
        out.push(event);
        for &c in children.get(&id).into_iter().flatten() {
            if let Some(child) = &slots[c] {
                ready.push(Reverse((child.occurred_at_ms(), child.event_id(), c)));
            }
        }
    }
    out
}

/// Only reached with a causation cycle: the earliest event not yet placed.
fn earliest_left<T: Causal>(slots: &[Option<T>]) -> Option<Reverse<(i64, String, usize)>> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().map(|e| (e.occurred_at_ms(), e.event_id(), i)))
        .min()
        .map(Reverse)
}

/// What an event says, in a few words, for a timeline line: the outcome it carries
/// (`failed: card_declined`, `reason payment_declined`), never personal data.
pub fn detail(payload: &Payload) -> String {
    let lines = |items: &[shared::contracts::OrderLine]| {
        let units: u64 = items.iter().map(|l| u64::from(l.quantity)).sum();
        format!("{} line(s), {units} unit(s)", items.len())
    };
    let money = |cents: i64, currency: &str| {
        format!("{}.{:02} {currency}", cents / 100, (cents % 100).abs())
    };
    match payload {
        // The card by its reference only (`tok_...visa`): never the token, sealed or not.
        Payload::OrderCreated(e) if !e.payment_ref.is_empty() => format!(
            "{}, total {}, card {}",
            lines(&e.items),
            money(e.total_cents, &e.currency),
            e.payment_ref
        ),
        Payload::OrderCreated(e) => format!(
            "{}, total {}",
            lines(&e.items),
            money(e.total_cents, &e.currency)
        ),
        Payload::StockReserved(e) => format!("reserved {}", lines(&e.items)),
        Payload::StockRejected(e) => {
            let reason = match RejectReason::try_from(e.reason) {
                Ok(RejectReason::OutOfStock) => "out of stock",
                Ok(RejectReason::UnknownProduct) => "unknown product",
                Ok(RejectReason::OrderCancelled) => "order already cancelled",
                _ => "unspecified",
            };
            format!("rejected: {reason} ({})", e.product_id)
        }
        Payload::PaymentProcessed(e) => match PaymentStatus::try_from(e.status) {
            Ok(PaymentStatus::Success) => {
                format!("success, authorized {}", money(e.amount_cents, &e.currency))
            }
            Ok(PaymentStatus::Failed) => format!("failed: {}", e.decline_code),
            _ => "unspecified status".into(),
        },
        Payload::OrderConfirmed(e) => format!("total {}", money(e.total_cents, &e.currency)),
        Payload::OrderCancelled(e) => format!(
            "reason {}",
            CancelReason::try_from(e.reason)
                .ok()
                .and_then(CancelReason::api_name)
                .unwrap_or("unspecified")
        ),
        Payload::StockReleased(e) => format!("released {}", lines(&e.items)),
        Payload::PaymentCaptured(e) => format!("captured {}", money(e.amount_cents, &e.currency)),
        Payload::PaymentVoided(e) if e.payment_id.is_empty() => {
            "voided before any authorization".into()
        }
        Payload::PaymentVoided(_) => "authorization voided".into(),
        Payload::NotificationSent(e) => format!(
            "{} via {}",
            NotificationKind::try_from(e.kind)
                .unwrap_or(NotificationKind::Unspecified)
                .api_name(),
            e.channel
        ),
        Payload::ProductUpdated(e) => {
            format!("{} at {}", e.product_id, money(e.price_cents, &e.currency))
        }
        // The carrier and a tracking number are no personal data; the address is not here.
        Payload::OrderShipped(e) => format!(
            "{} via {} ({})",
            lines(&e.items),
            e.carrier,
            e.tracking_number
        ),
        Payload::OrderDelivered(_) => "delivered".into(),
        Payload::RefundRequested(e) => format!(
            "refund {} requested{}",
            money(e.amount_cents, &e.currency),
            if e.restock { ", restock" } else { "" }
        ),
        Payload::PaymentRefunded(e) => format!("refunded {}", money(e.amount_cents, &e.currency)),
        Payload::PaymentRefundFailed(e) => format!(
            "refund of {} failed: {}",
            money(e.amount_cents, &e.currency),
            e.reason
        ),
        Payload::StockAdjusted(e) => format!("{} {:+} to {}", e.product_id, e.delta, e.available),
        Payload::StockLow(e) => format!(
            "{} low: {} left (threshold {})",
            e.product_id, e.available, e.threshold
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_say_what_the_event_decided() {
        let declined = Payload::PaymentProcessed(shared::contracts::PaymentProcessed {
            status: PaymentStatus::Failed as i32,
            decline_code: "card_declined".into(),
            ..Default::default()
        });
        assert_eq!(detail(&declined), "failed: card_declined");
        let cancelled = Payload::OrderCancelled(shared::contracts::OrderCancelled {
            reason: CancelReason::PaymentDeclined as i32,
            ..Default::default()
        });
        assert_eq!(detail(&cancelled), "reason payment_declined");
        let created = Payload::OrderCreated(shared::contracts::OrderCreated {
            items: vec![shared::contracts::OrderLine {
                product_id: "sku".into(),
                quantity: 2,
                unit_price_cents: 1999,
            }],
            total_cents: 3998,
            currency: "EUR".into(),
            ..Default::default()
        });
        assert_eq!(detail(&created), "1 line(s), 2 unit(s), total 39.98 EUR");
        let Payload::OrderCreated(mut sealed) = created else {
            unreachable!()
        };
        sealed.payment_token_sealed = "v1.00000000.c2VhbGVk".into();
        sealed.payment_ref = "tok_...visa".into();
        assert_eq!(
            detail(&Payload::OrderCreated(sealed)),
            "1 line(s), 2 unit(s), total 39.98 EUR, card tok_...visa"
        );
    }

    #[derive(Debug, Clone, PartialEq)]
    struct E(&'static str, &'static str, i64);

    impl Causal for E {
        fn event_id(&self) -> String {
            self.0.into()
        }
        fn causation_id(&self) -> String {
            self.1.into()
        }
        fn occurred_at_ms(&self) -> i64 {
            self.2
        }
    }

    fn ids(events: Vec<E>) -> Vec<&'static str> {
        causal_order(events).into_iter().map(|e| e.0).collect()
    }

    #[test]
    fn a_reply_stamped_before_its_request_still_comes_after_it() {
        // stock.reserved's clock is 3 ms behind order.created's.
        let events = vec![E("reserved", "created", 97), E("created", "", 100)];
        assert_eq!(ids(events), ["created", "reserved"]);
    }

    #[test]
    fn independent_branches_interleave_by_time() {
        let events = vec![
            E("cancelled", "paid", 30),
            E("paid", "created", 20),
            E("reserved", "created", 10),
            E("created", "", 0),
            E("released", "cancelled", 40),
            E("notified", "cancelled", 35),
        ];
        assert_eq!(
            ids(events),
            [
                "created",
                "reserved",
                "paid",
                "cancelled",
                "notified",
                "released"
            ]
        );
    }

    #[test]
    fn events_whose_cause_is_missing_and_cycles_are_kept() {
        let events = vec![E("b", "a", 2), E("a", "b", 1), E("orphan", "gone", 0)];
        let out = ids(events);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], "orphan");
    }
}
