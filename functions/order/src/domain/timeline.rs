//! Causal order of an order's events: every event after the event that caused it, and
//! otherwise by when it occurred. Clocks of different services may disagree by a few
//! milliseconds, so time alone could put a reply before its request.

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

#[cfg(test)]
mod tests {
    use super::*;

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
