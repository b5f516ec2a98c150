//! The order saga as a pure state machine: `step(state, input) -> (state, decision)`.
//!
//! The decision waits until both the stock and the payment result are known, so the final
//! state and reason never depend on the order in which they arrive. The first result of
//! each kind wins (duplicates and contradicting redeliveries are ignored), a decided order
//! ignores every result, and only a PENDING order can expire.
//!
//! The customer's cancel is the one input a decided order still takes: a PENDING or
//! CONFIRMED order becomes CANCELLED(customer_cancelled); a later stock or payment result
//! then changes nothing (downstream compensates it as it does after an expiry). Shipping
//! and delivery happen after the saga (`domain::fulfilment`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    OutOfStock,
    PaymentDeclined,
    Expired,
    CustomerCancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StockResult {
    Reserved,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentResult {
    Success,
    Failed,
}

/// What the saga knows about one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SagaState {
    pub status: Status,
    pub reason: Option<Reason>,
    pub stock: Option<StockResult>,
    pub payment: Option<PaymentResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    StockReserved,
    StockRejected,
    PaymentSucceeded,
    PaymentFailed,
    Expired,
    /// `POST /orders/{id}/cancel` by the order's owner.
    CustomerCancel,
}

/// What the saga tells the world, exactly once per order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Confirm,
    Cancel(Reason),
}

impl SagaState {
    /// A freshly created order.
    pub const fn pending() -> Self {
        SagaState {
            status: Status::Pending,
            reason: None,
            stock: None,
            payment: None,
        }
    }

    pub fn is_final(&self) -> bool {
        self.status != Status::Pending
    }
}

/// Applies one input. Returns the new state and, when this input settles the order, the
/// decision to publish.
pub fn step(state: SagaState, input: Input) -> (SagaState, Option<Decision>) {
    let mut next = state;
    match input {
        Input::CustomerCancel => return customer_cancel(state),
        _ if state.is_final() => return (state, None),
        Input::Expired => {
            next.status = Status::Cancelled;
            next.reason = Some(Reason::Expired);
            return (next, Some(Decision::Cancel(Reason::Expired)));
        }
        Input::StockReserved => {
            next.stock.get_or_insert(StockResult::Reserved);
        }
        Input::StockRejected => {
            next.stock.get_or_insert(StockResult::Rejected);
        }
        Input::PaymentSucceeded => {
            next.payment.get_or_insert(PaymentResult::Success);
        }
        Input::PaymentFailed => {
            next.payment.get_or_insert(PaymentResult::Failed);
        }
    }
    let decision = match (next.stock, next.payment) {
        (Some(StockResult::Reserved), Some(PaymentResult::Success)) => Decision::Confirm,
        // Out of stock takes precedence over a declined payment: the order could never have
        // been fulfilled, whatever the card said.
        (Some(StockResult::Rejected), Some(_)) => Decision::Cancel(Reason::OutOfStock),
        (Some(StockResult::Reserved), Some(PaymentResult::Failed)) => {
            Decision::Cancel(Reason::PaymentDeclined)
        }
        _ => return (next, None),
    };
    match decision {
        Decision::Confirm => next.status = Status::Confirmed,
        Decision::Cancel(reason) => {
            next.status = Status::Cancelled;
            next.reason = Some(reason);
        }
    }
    (next, Some(decision))
}

/// A customer's cancel: a PENDING order (whatever results it already has) or a CONFIRMED
/// one is cancelled; a shipped, delivered or already cancelled order stays as it is.
fn customer_cancel(state: SagaState) -> (SagaState, Option<Decision>) {
    match state.status {
        Status::Pending | Status::Confirmed => {
            let next = SagaState {
                status: Status::Cancelled,
                reason: Some(Reason::CustomerCancelled),
                ..state
            };
            (next, Some(Decision::Cancel(Reason::CustomerCancelled)))
        }
        Status::Shipped | Status::Delivered | Status::Cancelled => (state, None),
    }
}

/// Database and API spellings.
impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Confirmed => "CONFIRMED",
            Status::Shipped => "SHIPPED",
            Status::Delivered => "DELIVERED",
            Status::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Status::Pending),
            "CONFIRMED" => Some(Status::Confirmed),
            "SHIPPED" => Some(Status::Shipped),
            "DELIVERED" => Some(Status::Delivered),
            "CANCELLED" => Some(Status::Cancelled),
            _ => None,
        }
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OutOfStock => "out_of_stock",
            Reason::PaymentDeclined => "payment_declined",
            Reason::Expired => "expired",
            Reason::CustomerCancelled => "customer_cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "out_of_stock" => Some(Reason::OutOfStock),
            "payment_declined" => Some(Reason::PaymentDeclined),
            "expired" => Some(Reason::Expired),
            "customer_cancelled" => Some(Reason::CustomerCancelled),
            _ => None,
        }
    }

    /// The contract's enum.
    pub fn to_proto(self) -> shared::contracts::CancelReason {
        use shared::contracts::CancelReason;
        match self {
            Reason::OutOfStock => CancelReason::OutOfStock,
            Reason::PaymentDeclined => CancelReason::PaymentDeclined,
            Reason::Expired => CancelReason::Expired,
            Reason::CustomerCancelled => CancelReason::CustomerCancelled,
        }
    }
}

impl StockResult {
    pub fn as_str(self) -> &'static str {
        match self {
            StockResult::Reserved => "reserved",
            StockResult::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reserved" => Some(StockResult::Reserved),
            "rejected" => Some(StockResult::Rejected),
            _ => None,
        }
    }
}

impl PaymentResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentResult::Success => "success",
            PaymentResult::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(PaymentResult::Success),
            "failed" => Some(PaymentResult::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every distinct ordering of a multiset (duplicates included, each ordering once).
    fn permutations(items: &[Input]) -> Vec<Vec<Input>> {
        fn go(rest: &mut Vec<Input>, prefix: &mut Vec<Input>, out: &mut Vec<Vec<Input>>) {
            if rest.is_empty() {
                out.push(prefix.clone());
                return;
            }
            let mut seen = HashSet::new();
            for i in 0..rest.len() {
                if !seen.insert(rest[i]) {
                    continue;
                }
                let item = rest.remove(i);
                prefix.push(item);
                go(rest, prefix, out);
                prefix.pop();
                rest.insert(i, item);
            }
        }
        let mut out = Vec::new();
        go(&mut items.to_vec(), &mut Vec::new(), &mut out);
        out
    }

    fn run(inputs: &[Input]) -> (SagaState, Vec<Decision>) {
        inputs.iter().fold(
            (SagaState::pending(), Vec::new()),
            |(state, mut decisions), &input| {
                let (next, decision) = step(state, input);
                decisions.extend(decision);
                (next, decisions)
            },
        )
    }

    const STOCK: [Input; 2] = [Input::StockReserved, Input::StockRejected];
    const PAYMENT: [Input; 2] = [Input::PaymentSucceeded, Input::PaymentFailed];

    fn expected(stock: Input, payment: Input) -> (Status, Option<Reason>, Decision) {
        match (stock, payment) {
            (Input::StockReserved, Input::PaymentSucceeded) => {
                (Status::Confirmed, None, Decision::Confirm)
            }
            (Input::StockRejected, _) => (
                Status::Cancelled,
                Some(Reason::OutOfStock),
                Decision::Cancel(Reason::OutOfStock),
            ),
            _ => (
                Status::Cancelled,
                Some(Reason::PaymentDeclined),
                Decision::Cancel(Reason::PaymentDeclined),
            ),
        }
    }

    #[test]
    fn the_permutation_helper_enumerates_each_distinct_ordering_once() {
        let a = Input::StockReserved;
        let b = Input::PaymentSucceeded;
        // 4! / (2! 2!) = 6 distinct orderings of {a, a, b, b}.
        assert_eq!(permutations(&[a, a, b, b]).len(), 6);
        assert_eq!(permutations(&[a, b, Input::Expired]).len(), 6);
    }

    #[test]
    fn every_arrival_order_with_interleaved_duplicates_reaches_the_same_final_state() {
        for stock in STOCK {
            for payment in PAYMENT {
                let (status, reason, decision) = expected(stock, payment);
                for copies in 1..=3 {
                    let mut multiset = vec![stock; copies];
                    multiset.extend(vec![payment; copies]);
                    let orderings = permutations(&multiset);
                    assert!(!orderings.is_empty());
                    let finals: HashSet<SagaState> = orderings
                        .iter()
                        .map(|order| {
                            let (state, decisions) = run(order);
                            assert_eq!(
                                decisions,
                                vec![decision],
                                "exactly one decision for {order:?}"
                            );
                            assert_eq!((state.status, state.reason), (status, reason), "{order:?}");
                            state
                        })
                        .collect();
                    assert_eq!(
                        finals.len(),
                        1,
                        "one final state for {stock:?} x {payment:?}: {finals:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn no_decision_is_taken_until_both_results_are_known() {
        for input in STOCK.into_iter().chain(PAYMENT) {
            let (state, decision) = step(SagaState::pending(), input);
            assert_eq!(decision, None, "{input:?}");
            assert_eq!(state.status, Status::Pending);
            let (state, decision) = step(state, input);
            assert_eq!(decision, None, "a duplicate of {input:?} decides nothing");
            assert_eq!(state.status, Status::Pending);
        }
    }

    #[test]
    fn out_of_stock_takes_precedence_over_a_declined_payment() {
        for order in permutations(&[Input::StockRejected, Input::PaymentFailed]) {
            let (state, decisions) = run(&order);
            assert_eq!(state.reason, Some(Reason::OutOfStock));
            assert_eq!(decisions, vec![Decision::Cancel(Reason::OutOfStock)]);
        }
    }

    #[test]
    fn the_first_result_of_a_kind_wins_over_a_contradicting_redelivery() {
        let (state, decisions) = run(&[
            Input::StockReserved,
            Input::StockRejected,
            Input::PaymentSucceeded,
        ]);
        assert_eq!(state.stock, Some(StockResult::Reserved));
        assert_eq!(decisions, vec![Decision::Confirm]);
        let (state, decisions) = run(&[
            Input::PaymentFailed,
            Input::PaymentSucceeded,
            Input::StockReserved,
        ]);
        assert_eq!(state.payment, Some(PaymentResult::Failed));
        assert_eq!(decisions, vec![Decision::Cancel(Reason::PaymentDeclined)]);
    }

    #[test]
    fn expiry_cancels_a_pending_order_whatever_it_already_knows() {
        for known in [
            vec![],
            vec![Input::StockReserved],
            vec![Input::PaymentSucceeded],
            vec![Input::StockRejected],
        ] {
            let (state, _) = run(&known);
            let (state, decision) = step(state, Input::Expired);
            assert_eq!(
                decision,
                Some(Decision::Cancel(Reason::Expired)),
                "after {known:?}"
            );
            assert_eq!(
                (state.status, state.reason),
                (Status::Cancelled, Some(Reason::Expired))
            );
        }
    }

    #[test]
    fn expiry_only_affects_pending_orders() {
        for stock in STOCK {
            for payment in PAYMENT {
                let (settled, _) = run(&[stock, payment]);
                let (after, decision) = step(settled, Input::Expired);
                assert_eq!(decision, None);
                assert_eq!(after, settled);
            }
        }
    }

    #[test]
    fn a_late_result_after_expiry_changes_nothing() {
        let (expired, _) = run(&[Input::Expired]);
        for input in [
            Input::StockReserved,
            Input::StockRejected,
            Input::PaymentSucceeded,
            Input::PaymentFailed,
            Input::Expired,
        ] {
            let (after, decision) = step(expired, input);
            assert_eq!(decision, None, "{input:?}");
            assert_eq!(after, expired, "{input:?}");
        }
    }

    #[test]
    fn with_expiry_in_the_mix_each_ordering_decides_once_and_never_changes_after() {
        for stock in STOCK {
            for payment in PAYMENT {
                let (_, _, decision) = expected(stock, payment);
                for order in permutations(&[stock, stock, payment, payment, Input::Expired]) {
                    let (state, decisions) = run(&order);
                    assert_eq!(decisions.len(), 1, "{order:?}");
                    let expired_first = order.iter().position(|i| *i == Input::Expired)
                        < [stock, payment]
                            .iter()
                            .filter_map(|k| order.iter().position(|i| i == k))
                            .max();
                    if expired_first {
                        assert_eq!(decisions[0], Decision::Cancel(Reason::Expired), "{order:?}");
                        assert_eq!(state.reason, Some(Reason::Expired));
                    } else {
                        assert_eq!(decisions[0], decision, "{order:?}");
                    }
                    assert!(state.is_final());
                }
            }
        }
    }

    #[test]
    fn spellings_round_trip() {
        for s in [
            Status::Pending,
            Status::Confirmed,
            Status::Shipped,
            Status::Delivered,
            Status::Cancelled,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for r in [
            Reason::OutOfStock,
            Reason::PaymentDeclined,
            Reason::Expired,
            Reason::CustomerCancelled,
        ] {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert_eq!(r.to_proto().api_name(), Some(r.as_str()));
        }
        for s in [StockResult::Reserved, StockResult::Rejected] {
            assert_eq!(StockResult::parse(s.as_str()), Some(s));
        }
        for p in [PaymentResult::Success, PaymentResult::Failed] {
            assert_eq!(PaymentResult::parse(p.as_str()), Some(p));
        }
    }

    const RESULTS: [Input; 4] = [
        Input::StockReserved,
        Input::StockRejected,
        Input::PaymentSucceeded,
        Input::PaymentFailed,
    ];

    #[test]
    fn a_customer_cancel_of_a_pending_order_wins_over_every_later_result() {
        for known in [
            vec![],
            vec![Input::StockReserved],
            vec![Input::PaymentSucceeded],
            vec![Input::PaymentFailed],
        ] {
            let (state, _) = run(&known);
            let (cancelled, decision) = step(state, Input::CustomerCancel);
            assert_eq!(
                decision,
                Some(Decision::Cancel(Reason::CustomerCancelled)),
                "after {known:?}"
            );
            assert_eq!(cancelled.status, Status::Cancelled);
            for late in RESULTS.into_iter().chain([Input::Expired]) {
                let (after, decision) = step(cancelled, late);
                assert_eq!(decision, None, "{late:?} after the cancel");
                assert_eq!(after, cancelled);
            }
        }
    }

    #[test]
    fn a_customer_cancel_of_a_confirmed_order_cancels_it_once() {
        let (confirmed, _) = run(&[Input::StockReserved, Input::PaymentSucceeded]);
        assert_eq!(confirmed.status, Status::Confirmed);
        let (cancelled, decision) = step(confirmed, Input::CustomerCancel);
        assert_eq!(decision, Some(Decision::Cancel(Reason::CustomerCancelled)));
        assert_eq!(
            (cancelled.status, cancelled.reason),
            (Status::Cancelled, Some(Reason::CustomerCancelled))
        );
        // The results it was confirmed on are kept: they say what downstream holds.
        assert_eq!(cancelled.stock, Some(StockResult::Reserved));
        let (again, decision) = step(cancelled, Input::CustomerCancel);
        assert_eq!(decision, None, "a repeated cancel decides nothing");
        assert_eq!(again, cancelled);
    }

    #[test]
    fn a_customer_cancel_does_not_touch_a_shipped_delivered_or_otherwise_cancelled_order() {
        let (declined, _) = run(&[Input::StockReserved, Input::PaymentFailed]);
        let (expired, _) = run(&[Input::Expired]);
        let (confirmed, _) = run(&[Input::StockReserved, Input::PaymentSucceeded]);
        let shipped = SagaState {
            status: Status::Shipped,
            ..confirmed
        };
        let delivered = SagaState {
            status: Status::Delivered,
            ..confirmed
        };
        for state in [declined, expired, shipped, delivered] {
            let (after, decision) = step(state, Input::CustomerCancel);
            assert_eq!(decision, None, "{state:?}");
            assert_eq!(after, state);
        }
    }

    #[test]
    fn results_do_not_move_a_shipped_or_delivered_order() {
        let (confirmed, _) = run(&[Input::StockReserved, Input::PaymentSucceeded]);
        for status in [Status::Shipped, Status::Delivered] {
            let state = SagaState {
                status,
                ..confirmed
            };
            for input in RESULTS.into_iter().chain([Input::Expired]) {
                assert_eq!(step(state, input), (state, None), "{status} {input:?}");
            }
        }
    }

    #[test]
    fn with_a_customer_cancel_in_the_mix_every_ordering_ends_cancelled_and_confirms_at_most_once_before()
     {
        for stock in STOCK {
            for payment in PAYMENT {
                let (_, _, decision) = expected(stock, payment);
                for order in permutations(&[stock, payment, payment, Input::CustomerCancel]) {
                    let (state, decisions) = run(&order);
                    let cancel_at = order.iter().position(|i| *i == Input::CustomerCancel);
                    let decided_at = [stock, payment]
                        .iter()
                        .filter_map(|k| order.iter().position(|i| i == k))
                        .max();
                    if cancel_at < decided_at {
                        assert_eq!(
                            decisions,
                            vec![Decision::Cancel(Reason::CustomerCancelled)],
                            "{order:?}"
                        );
                    } else if decision == Decision::Confirm {
                        // Confirmed first, then cancelled by the customer: two decisions.
                        assert_eq!(
                            decisions,
                            vec![decision, Decision::Cancel(Reason::CustomerCancelled)],
                            "{order:?}"
                        );
                    } else {
                        assert_eq!(decisions, vec![decision], "{order:?}");
                    }
                    assert_eq!(state.status, Status::Cancelled, "{order:?}");
                }
            }
        }
    }
}
