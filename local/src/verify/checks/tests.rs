//! Each check on a clean snapshot (no violation) and on the snapshot broken the way a bug
//! would break it (the violation it must report); then repaired, clean again.

use super::*;
use crate::broker::{DeadLetterProbe, QueueDepth, QueueProbe};
use inventory::domain::StockFigure;
use inventory::{MovementRow, ProductFigure, ReservationRow};
use notification::NotificationRow;
use payment::{GatewayCall, LedgerRow, PaymentRow};
use uuid::Uuid;

const CONFIRMED: u128 = 1;
const DECLINED: u128 = 2;
const NO_STOCK: u128 = 3;

fn oid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn order(n: u128, status: &str, reason: Option<&str>, items: &[(&str, i64)]) -> order::OrderRow {
    order::OrderRow {
        order_id: oid(n),
        status: status.into(),
        reason: reason.map(Into::into),
        total_cents: items.iter().map(|(_, q)| q * 100).sum(),
        items: items.iter().map(|(p, q)| (p.to_string(), *q)).collect(),
        carrier: None,
        tracking_number: None,
        shipped_at: None,
        delivered_at: None,
        refunds: vec![],
    }
}

fn mv(id: i64, product: &str, kind: &str, order: Option<u128>, delta: i64) -> MovementRow {
    MovementRow {
        movement_id: id,
        product_id: product.into(),
        kind: kind.into(),
        order_id: order.map(|n| oid(n).to_string()),
        delta,
        quantity: 0,
    }
}

fn call(
    key: &str,
    kind: &str,
    order: u128,
    outcome: &str,
    amount: i64,
) -> (LedgerRow, GatewayCall) {
    (
        LedgerRow {
            idempotency_key: key.into(),
            order_id: oid(order).to_string(),
            kind: kind.into(),
            outcome: outcome.into(),
            amount_cents: amount,
            gateway_refund_id: refund_id(kind, outcome, key),
        },
        GatewayCall {
            idempotency_key: key.into(),
            kind: kind.into(),
            order_id: oid(order).to_string(),
            amount_cents: amount,
            payment_id: None,
            outcome: outcome.into(),
            calls: 1,
            refund_id: refund_id(kind, outcome, key),
        },
    )
}

/// The gateway's id of a refund it made under `key`.
fn refund_id(kind: &str, outcome: &str, key: &str) -> Option<String> {
    (kind == "refund" && outcome == "succeeded").then(|| format!("re_{key}"))
}

fn note(n: u128, order: u128, kind: &str) -> NotificationRow {
    NotificationRow {
        notification_id: Uuid::from_u128(1000 + n),
        order_id: oid(order).to_string(),
        kind: kind.into(),
        ref_id: String::new(),
        status: "delivered".into(),
    }
}

/// Three orders, one of each outcome, every record agreeing: sku-a had 10, the confirmed
/// order holds 2; sku-b had 1, the declined order reserved it and gave it back; the
/// out-of-stock order asked for 5 of sku-b and got nothing.
fn clean() -> Snapshot {
    let orders = vec![
        order(CONFIRMED, "CONFIRMED", None, &[("sku-a", 2)]),
        order(
            DECLINED,
            "CANCELLED",
            Some("payment_declined"),
            &[("sku-b", 1)],
        ),
        order(NO_STOCK, "CANCELLED", Some("out_of_stock"), &[("sku-b", 5)]),
    ];
    let stock = inventory::StockAudit {
        products: vec![
            ProductFigure {
                product_id: "sku-a".into(),
                available: 8,
                version: 2,
                reserved: 2,
            },
            ProductFigure {
                product_id: "sku-b".into(),
                available: 1,
                version: 3,
                reserved: 0,
            },
        ],
        movements: vec![
            mv(1, "sku-a", "restock", None, 10),
            mv(2, "sku-b", "restock", None, 1),
            mv(3, "sku-a", "reserve", Some(CONFIRMED), -2),
            mv(4, "sku-b", "reserve", Some(DECLINED), -1),
            mv(5, "sku-b", "release", Some(DECLINED), 1),
        ],
        reservations: vec![
            ReservationRow {
                order_id: oid(CONFIRMED).to_string(),
                status: "reserved".into(),
                items: vec![("sku-a".into(), 2)],
            },
            ReservationRow {
                order_id: oid(DECLINED).to_string(),
                status: "released".into(),
                items: vec![("sku-b".into(), 1)],
            },
            ReservationRow {
                order_id: oid(NO_STOCK).to_string(),
                status: "rejected".into(),
                items: vec![],
            },
        ],
    };
    let calls = [
        call("authorize:e1", "authorize", CONFIRMED, "approved", 200),
        call("capture:e2", "capture", CONFIRMED, "succeeded", 200),
        call("authorize:e3", "authorize", DECLINED, "declined", 100),
        call("authorize:e4", "authorize", NO_STOCK, "approved", 500),
        call("void:e5", "void", NO_STOCK, "succeeded", 500),
    ];
    let payments = payment::PaymentAudit {
        payments: vec![
            PaymentRow {
                order_id: oid(CONFIRMED).to_string(),
                status: "captured".into(),
                amount_cents: 200,
                refunded_cents: 0,
            },
            PaymentRow {
                order_id: oid(DECLINED).to_string(),
                status: "declined".into(),
                amount_cents: 100,
                refunded_cents: 0,
            },
            PaymentRow {
                order_id: oid(NO_STOCK).to_string(),
                status: "voided".into(),
                amount_cents: 500,
                refunded_cents: 0,
            },
        ],
        ledger: calls.iter().map(|c| c.0.clone()).collect(),
        gateway: Some(calls.iter().map(|c| c.1.clone()).collect()),
    };
    let notifications = vec![
        note(1, CONFIRMED, "order_received"),
        note(2, CONFIRMED, "order_confirmed"),
        note(3, DECLINED, "order_received"),
        note(4, DECLINED, "order_cancelled"),
        note(5, NO_STOCK, "order_received"),
        note(6, NO_STOCK, "order_cancelled"),
    ];
    let sent_events = notifications
        .iter()
        .map(|n| n.notification_id.to_string())
        .collect();
    Snapshot {
        orders,
        stock,
        payments,
        notifications: notification::NotificationAudit {
            notifications,
            sent_events,
        },
        outbox: vec![("orders".into(), 0, 0.0), ("inventory".into(), 0, 0.0)],
        queues: vec![QueueProbe {
            queue: "order-saga".into(),
            depth: Ok(QueueDepth {
                ready: 0,
                unacked: Ok(0),
            }),
        }],
        dead_letters: vec![DeadLetterProbe {
            queue: "order-saga.dlq".into(),
            letters: Ok(vec![]),
        }],
        cache: Ok(vec![
            (
                "sku-a".into(),
                Some(StockFigure {
                    version: 2,
                    available: 8,
                }),
            ),
            ("sku-b".into(), None),
        ]),
    }
}

fn violations(c: &Check) -> String {
    c.violations.join("\n")
}

/// The check passes on `clean()`, fails on `broken` with a violation containing `expect`.
fn fails_with(check: fn(&Snapshot) -> Check, broken: &Snapshot, expect: &str) {
    let ok = check(&clean());
    assert!(ok.ok(), "clean snapshot: {}", violations(&ok));
    let bad = check(broken);
    assert!(
        bad.violations.iter().any(|v| v.contains(expect)),
        "expected a violation containing {expect:?}, got:\n{}",
        violations(&bad)
    );
}

#[test]
fn a_clean_snapshot_passes_every_check() {
    for c in all(&clean(), &Expect::default()) {
        assert!(c.ok(), "{}", c.line());
    }
}

#[test]
fn a_pending_order_fails_every_order_final() {
    let mut s = clean();
    s.orders[0].status = "PENDING".into();
    fails_with(orders_final, &s, "still PENDING");
}

#[test]
fn stock_taken_without_a_ledger_row_is_a_leak() {
    let mut s = clean();
    s.stock.products[0].available -= 1;
    fails_with(stock_conserved, &s, "the stock ledger says 8");
}

#[test]
fn a_reseed_after_a_leak_does_not_launder_it() {
    // A unit leaked (shelf 7, ledger 8); then a re-seed to 50 records the difference it
    // made on the shelf (+43): the ledger says 51, the shelf 50.
    let mut s = clean();
    s.stock.products[0].available = 50;
    s.stock
        .movements
        .push(mv(6, "sku-a", "restock", None, 50 - 7));
    fails_with(
        stock_conserved,
        &s,
        "shelf says 50 available, the stock ledger says 51",
    );
    // The same re-seed without a leak before it is clean.
    let mut s = clean();
    s.stock.products[0].available = 50;
    s.stock
        .movements
        .push(mv(6, "sku-a", "restock", None, 50 - 8));
    assert!(stock_conserved(&s).ok(), "{}", stock_conserved(&s).line());
}

#[test]
fn selling_the_last_unit_twice_shows_as_the_ledger_going_negative() {
    // Both orders took sku-b's only unit; a restock later hides it on the shelf.
    let mut s = clean();
    s.stock.movements.truncate(3);
    s.stock
        .movements
        .push(mv(4, "sku-b", "reserve", Some(DECLINED), -1));
    s.stock
        .movements
        .push(mv(5, "sku-b", "reserve", Some(NO_STOCK), -1));
    s.stock.movements.push(mv(6, "sku-b", "restock", None, 3));
    s.stock.products[1].available = 1;
    fails_with(stock_conserved, &s, "oversold");
}

#[test]
fn a_cancelled_order_that_keeps_its_stock_is_reported() {
    let mut s = clean();
    s.stock.movements.pop(); // the release never happened
    s.stock.products[1].available = 0;
    fails_with(stock_conserved, &s, "is CANCELLED but still holds");
}

#[test]
fn a_reservation_applied_twice_is_reported() {
    let mut s = clean();
    s.stock
        .movements
        .push(mv(6, "sku-a", "reserve", Some(CONFIRMED), -2));
    s.stock.products[0].available = 6;
    fails_with(stock_conserved, &s, "is CONFIRMED and holds");
}

#[test]
fn stock_moved_for_an_order_nobody_placed_is_reported() {
    let mut s = clean();
    s.stock
        .movements
        .push(mv(6, "sku-a", "reserve", Some(99), -1));
    s.stock.products[0].available = 7;
    fails_with(stock_conserved, &s, "unknown order");
}

#[test]
fn a_cancelled_order_whose_authorization_was_never_voided_keeps_money() {
    let mut s = clean();
    s.payments.ledger.retain(|r| r.idempotency_key != "void:e5");
    if let Some(g) = s.payments.gateway.as_mut() {
        g.retain(|c| c.idempotency_key != "void:e5");
    }
    fails_with(money_settled, &s, "authorization left open");
}

#[test]
fn a_second_authorization_at_the_gateway_is_seen_even_if_the_ledger_lost_it() {
    // The first call's transaction rolled back, the retry used a new key: the gateway holds
    // two authorizations, the ledger one.
    let mut s = clean();
    let (_, extra) = call("authorize:other", "authorize", CONFIRMED, "approved", 200);
    if let Some(g) = s.payments.gateway.as_mut() {
        g.push(extra);
    }
    fails_with(
        money_settled,
        &s,
        "gateway: order 00000000-0000-0000-0000-000000000001 was authorized 2 times",
    );
    fails_with(ledger_reconciled, &s, "is not in the ledger");
}

#[test]
fn a_repeated_key_answered_from_the_gateways_record_is_not_a_second_charge() {
    let mut s = clean();
    if let Some(g) = s.payments.gateway.as_mut() {
        g[0].calls = 3;
    }
    assert!(money_settled(&s).ok(), "{}", money_settled(&s).line());
    let c = ledger_reconciled(&s);
    assert!(c.ok(), "{}", c.line());
    assert!(c.summary.contains("2 repeated keys"), "{}", c.summary);
}

#[test]
fn a_capture_of_the_wrong_amount_is_reported() {
    let mut s = clean();
    s.payments.ledger[1].amount_cents = 150;
    fails_with(money_settled, &s, "captured 150, its total is 200");
    fails_with(ledger_reconciled, &s, "ledger says capture succeeded 150");
}

#[test]
fn a_confirmed_order_never_captured_and_a_cancelled_one_captured_are_reported() {
    let mut s = clean();
    s.payments.ledger.retain(|r| r.kind != "capture");
    fails_with(money_settled, &s, "CONFIRMED but was never captured");
    let mut s = clean();
    let (l, g) = call("capture:e9", "capture", NO_STOCK, "succeeded", 500);
    s.payments.ledger.push(l);
    if let Some(gw) = s.payments.gateway.as_mut() {
        gw.push(g);
    }
    fails_with(
        money_settled,
        &s,
        "CANCELLED but keeps 500 (500 captured, 0 refunded)",
    );
}

#[test]
fn a_ledger_row_the_gateway_never_saw_is_reported() {
    let mut s = clean();
    let (l, _) = call("void:e9", "void", DECLINED, "succeeded", 100);
    s.payments.ledger.push(l);
    fails_with(ledger_reconciled, &s, "has no gateway call");
}

#[test]
fn without_a_gateway_record_the_ledger_alone_is_judged() {
    let mut s = clean();
    s.payments.gateway = None;
    assert!(ledger_reconciled(&s).ok());
    s.payments.ledger.retain(|r| r.idempotency_key != "void:e5");
    assert!(!money_settled(&s).ok());
}

#[test]
fn a_notification_stuck_pending_or_failed_is_reported() {
    for status in ["pending", "failed"] {
        let mut s = clean();
        s.notifications.notifications[1].status = status.into();
        fails_with(
            notifications_delivered,
            &s,
            &format!("is {status}, not delivered"),
        );
    }
}

#[test]
fn a_missing_wrong_or_twice_announced_notification_is_reported() {
    let mut s = clean();
    s.notifications.notifications.remove(1);
    s.notifications.sent_events.remove(1);
    fails_with(
        notifications_delivered,
        &s,
        "has 0 order_confirmed notifications",
    );

    let mut s = clean();
    s.notifications.notifications[1].kind = "order_cancelled".into();
    fails_with(notifications_delivered, &s, "was notified order_cancelled");

    let mut s = clean();
    let again = s.notifications.sent_events[0].clone();
    s.notifications.sent_events.push(again);
    fails_with(notifications_delivered, &s, "was announced 2 times");

    let mut s = clean();
    s.notifications
        .notifications
        .push(note(9, 99, "order_received"));
    s.notifications
        .sent_events
        .push(Uuid::from_u128(1009).to_string());
    fails_with(notifications_delivered, &s, "unknown order");
}

fn lost(s: &Snapshot) -> Check {
    nothing_lost(s, &Expect::default())
}

#[test]
fn an_unpublished_outbox_row_is_a_lost_event() {
    let mut s = clean();
    s.outbox[1].1 = 2;
    fails_with(lost, &s, "inventory: 2 outbox rows unpublished");
}

#[test]
fn a_missing_dead_letter_queue_is_a_violation_not_zero_dead_letters() {
    let mut s = clean();
    s.dead_letters.insert(
        0,
        DeadLetterProbe {
            queue: "inventory-reserve.dlq".into(),
            letters: Err("queue inventory-reserve.dlq is missing".into()),
        },
    );
    fails_with(lost, &s, "is missing");
}

#[test]
fn dead_letters_need_invalid_input_and_always_a_reason() {
    let mut s = clean();
    s.dead_letters[0].letters = Ok(vec![Some("cannot decode".into())]);
    fails_with(lost, &s, "parked although no invalid input was sent");
    let sent_invalid = Expect {
        invalid_input: true,
    };
    assert!(nothing_lost(&s, &sent_invalid).ok());
    s.dead_letters[0].letters = Ok(vec![Some("cannot decode".into()), None]);
    let c = nothing_lost(&s, &sent_invalid);
    assert!(
        c.violations.iter().any(|v| v.contains("without a reason")),
        "{}",
        c.line()
    );
}

#[test]
fn a_batch_in_flight_is_not_settled() {
    let mut s = clean();
    s.queues[0].depth = Ok(QueueDepth {
        ready: 0,
        unacked: Ok(7),
    });
    fails_with(settled, &s, "7 messages unacknowledged");
    let mut s = clean();
    s.queues[0].depth = Ok(QueueDepth {
        ready: 3,
        unacked: Ok(0),
    });
    fails_with(settled, &s, "3 messages ready");
    let mut s = clean();
    s.queues[0].depth = Ok(QueueDepth {
        ready: 0,
        unacked: Err("management API unreachable".into()),
    });
    fails_with(settled, &s, "unacknowledged count unknown");
    let mut s = clean();
    s.queues[0].depth = Err("queue order-saga is missing".into());
    fails_with(settled, &s, "is missing");
}

#[test]
fn a_stale_cache_entry_is_reported_and_expired_ones_are_counted_not_compared() {
    let mut s = clean();
    s.cache = Ok(vec![(
        "sku-a".into(),
        Some(StockFigure {
            version: 1,
            available: 10,
        }),
    )]);
    fails_with(cache_agrees, &s, "cache says available 10 (version 1)");

    let mut s = clean();
    s.cache = Ok(vec![("sku-a".into(), None), ("sku-b".into(), None)]);
    let c = cache_agrees(&s);
    assert!(c.ok());
    assert!(
        c.summary
            .starts_with("0 cached entries compared, 2 products"),
        "{}",
        c.summary
    );

    let mut s = clean();
    s.cache = Err("connection refused".into());
    fails_with(cache_agrees, &s, "could not read the stock cache");
}

// ---- the order after its decision (issue 12) ------------------------------------------

fn shipped(mut o: order::OrderRow, delivered: bool) -> order::OrderRow {
    let at = chrono::DateTime::from_timestamp(1_795_773_600, 0).expect("time");
    o.status = if delivered { "DELIVERED" } else { "SHIPPED" }.into();
    o.carrier = Some("DHL".into());
    o.tracking_number = Some("JD014600003SE".into());
    o.shipped_at = Some(at);
    o.delivered_at = delivered.then_some(at);
    o
}

fn refund_row(n: u128, kind: &str, amount: i64, status: &str) -> order::RefundRow {
    order::RefundRow {
        refund_id: Uuid::from_u128(5000 + n),
        kind: kind.into(),
        amount_cents: amount,
        status: status.into(),
    }
}

/// `clean()` with the confirmed order shipped, delivered or customer-cancelled instead.
fn lifecycle_clean(status: &str) -> Snapshot {
    let mut s = clean();
    let o = s.orders[0].clone();
    s.orders[0] = match status {
        "SHIPPED" => shipped(o, false),
        "DELIVERED" => shipped(o, true),
        _ => o,
    };
    s
}

#[test]
fn shipped_delivered_and_customer_cancelled_orders_are_final() {
    for status in ["SHIPPED", "DELIVERED"] {
        let s = lifecycle_clean(status);
        let c = orders_final(&s);
        assert!(c.ok(), "{}", c.line());
        let c = fulfilment_recorded(&s);
        assert!(c.ok(), "{}", c.line());
    }
    let mut s = clean();
    s.orders[1].reason = Some("customer_cancelled".into());
    assert!(orders_final(&s).ok());
    s.orders[1].reason = Some("changed_mind".into());
    fails_with(orders_final, &s, "with reason Some(\"changed_mind\")");
    let mut s = lifecycle_clean("SHIPPED");
    s.orders[0].reason = Some("expired".into());
    fails_with(orders_final, &s, "is SHIPPED with reason");
}

#[test]
fn a_shipped_or_delivered_order_without_its_shipment_is_reported() {
    let mut s = lifecycle_clean("SHIPPED");
    s.orders[0].tracking_number = None;
    fails_with(fulfilment_recorded, &s, "has no complete shipment");

    let mut s = lifecycle_clean("DELIVERED");
    s.orders[0].shipped_at = None;
    fails_with(fulfilment_recorded, &s, "has no complete shipment");

    let mut s = lifecycle_clean("DELIVERED");
    s.orders[0].delivered_at = None;
    fails_with(
        fulfilment_recorded,
        &s,
        "DELIVERED but has no delivery time",
    );

    let mut s = lifecycle_clean("SHIPPED");
    s.orders[0].delivered_at = s.orders[0].shipped_at;
    fails_with(fulfilment_recorded, &s, "SHIPPED but has a delivery time");

    let mut s = lifecycle_clean("DELIVERED");
    s.orders[0].status = "CONFIRMED".into();
    fails_with(fulfilment_recorded, &s, "CONFIRMED but has a shipment");
}

#[test]
fn an_admin_refund_left_requested_or_refunds_above_the_total_are_reported() {
    let mut s = lifecycle_clean("DELIVERED");
    let total = s.orders[0].total_cents;
    s.orders[0].refunds = vec![
        refund_row(1, "admin", 50, "refunded"),
        refund_row(2, "admin", total, "failed"),
    ];
    let c = fulfilment_recorded(&s);
    assert!(c.ok(), "a failed refund gives nothing back: {}", c.line());

    s.orders[0]
        .refunds
        .push(refund_row(3, "admin", 10, "requested"));
    fails_with(fulfilment_recorded, &s, "is still requested");

    let mut s = lifecycle_clean("DELIVERED");
    s.orders[0].refunds = vec![
        refund_row(1, "admin", total, "refunded"),
        refund_row(2, "admin", 1, "refunded"),
    ];
    fails_with(fulfilment_recorded, &s, "exceed its total");

    let mut s = clean();
    s.orders[0].refunds = vec![refund_row(1, "cancel", 10, "pending")];
    fails_with(fulfilment_recorded, &s, "(cancel) is pending");
}

// Refunds and the order's life after the decision (DESIGN.md section 9).

const PAID: u128 = 4;

/// `clean()` plus order PAID (total 300, no stock: only the money and notification checks
/// look at it) in `status`, authorized, captured, refunded `refunds` (refund ids r1, r2,
/// ...), with every notification its states and refunds call for.
fn with_paid_order(status: &str, reason: Option<&str>, refunds: &[i64]) -> Snapshot {
    let mut s = clean();
    s.orders.push(order(PAID, status, reason, &[("sku-a", 3)]));
    let mut calls = vec![
        call("authorize:p1", "authorize", PAID, "approved", 300),
        call("capture:p2", "capture", PAID, "succeeded", 300),
    ];
    for (i, amount) in refunds.iter().enumerate() {
        let key = format!("refund:r{}", i + 1);
        calls.push(call(&key, "refund", PAID, "succeeded", *amount));
    }
    for (l, g) in calls {
        s.payments.ledger.push(l);
        if let Some(gw) = s.payments.gateway.as_mut() {
            gw.push(g);
        }
    }
    s.payments.payments.push(PaymentRow {
        order_id: oid(PAID).to_string(),
        status: "captured".into(),
        amount_cents: 300,
        refunded_cents: refunds.iter().sum(),
    });
    let mut kinds = vec!["order_received", "order_confirmed"];
    match status {
        "SHIPPED" => kinds.push("order_shipped"),
        "DELIVERED" => kinds.extend(["order_shipped", "order_delivered"]),
        "CANCELLED" => kinds.push("order_cancelled"),
        _ => {}
    }
    let mut notes: Vec<NotificationRow> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| note(100 + i as u128, PAID, k))
        .collect();
    for i in 0..refunds.len() {
        let mut n = note(200 + i as u128, PAID, "order_refunded");
        n.ref_id = format!("r{}", i + 1);
        notes.push(n);
    }
    for n in notes {
        s.notifications
            .sent_events
            .push(n.notification_id.to_string());
        s.notifications.notifications.push(n);
    }
    s
}

/// The money, ledger and notification checks all pass on `s`.
fn money_and_notes_pass(s: &Snapshot) {
    for c in [
        money_settled(s),
        ledger_reconciled(s),
        notifications_delivered(s),
    ] {
        assert!(c.ok(), "{}", c.line());
    }
}

#[test]
fn a_cancel_after_capture_refunded_in_full_passes_and_a_partial_one_keeps_money() {
    let s = with_paid_order("CANCELLED", Some("customer_cancelled"), &[300]);
    money_and_notes_pass(&s);
    let s = with_paid_order("CANCELLED", Some("customer_cancelled"), &[100, 200]);
    money_and_notes_pass(&s);
    let s = with_paid_order("CANCELLED", Some("customer_cancelled"), &[200]);
    fails_with(
        money_settled,
        &s,
        "is CANCELLED but keeps 100 (300 captured, 200 refunded)",
    );
    let s = with_paid_order("CANCELLED", Some("customer_cancelled"), &[]);
    fails_with(money_settled, &s, "is CANCELLED but keeps 300");
}

#[test]
fn refunds_above_the_capture_are_reported_on_the_ledger_and_the_gateway() {
    let s = with_paid_order("DELIVERED", None, &[200, 101]);
    let c = money_settled(&s);
    for source in ["ledger", "gateway"] {
        let want = format!(
            "{source}: order {} was refunded 301, more than the 300 captured",
            oid(PAID)
        );
        assert!(c.violations.contains(&want), "{want} in {}", c.line());
    }
}

#[test]
fn shipped_and_delivered_orders_need_one_capture_of_their_total_less_refunds() {
    money_and_notes_pass(&with_paid_order("SHIPPED", None, &[]));
    money_and_notes_pass(&with_paid_order("DELIVERED", None, &[120]));
    money_and_notes_pass(&with_paid_order("CONFIRMED", None, &[300]));
    let mut s = with_paid_order("SHIPPED", None, &[]);
    s.payments
        .ledger
        .retain(|r| r.idempotency_key != "capture:p2");
    fails_with(money_settled, &s, "is SHIPPED but was never captured");
    let mut s = with_paid_order("DELIVERED", None, &[]);
    s.payments
        .ledger
        .retain(|r| r.idempotency_key != "capture:p2");
    s.payments.payments.last_mut().expect("paid").status = "authorized".into();
    fails_with(
        money_settled,
        &s,
        "is DELIVERED but its payment is authorized",
    );
    fails_with(money_settled, &s, "authorization left open");
}

#[test]
fn a_refund_the_gateway_knows_under_another_id_or_without_one_is_reported() {
    let mut s = with_paid_order("DELIVERED", None, &[50]);
    let row = s
        .payments
        .ledger
        .iter_mut()
        .find(|r| r.kind == "refund")
        .expect("refund row");
    row.gateway_refund_id = Some("re_other".into());
    fails_with(
        ledger_reconciled,
        &s,
        "ledger names refund Some(\"re_other\")",
    );
    let mut s = with_paid_order("DELIVERED", None, &[50]);
    s.payments.gateway = None;
    for r in s.payments.ledger.iter_mut().filter(|r| r.kind == "refund") {
        r.gateway_refund_id = None;
    }
    fails_with(ledger_reconciled, &s, "has no gateway refund id");
}

#[test]
fn every_shipment_delivery_and_refund_has_its_one_notification() {
    let drop_kind = |status: &str, kind: &str| {
        let mut s = with_paid_order(status, None, &[40]);
        let n = s
            .notifications
            .notifications
            .iter()
            .position(|n| n.kind == kind)
            .expect("note");
        let removed = s.notifications.notifications.remove(n);
        s.notifications
            .sent_events
            .retain(|id| *id != removed.notification_id.to_string());
        s
    };
    fails_with(
        notifications_delivered,
        &drop_kind("SHIPPED", "order_shipped"),
        "(SHIPPED) has 0 order_shipped notifications",
    );
    fails_with(
        notifications_delivered,
        &drop_kind("DELIVERED", "order_delivered"),
        "(DELIVERED) has 0 order_delivered notifications",
    );
    fails_with(
        notifications_delivered,
        &drop_kind("DELIVERED", "order_refunded"),
        "was refunded [\"r1\"] but notified of refunds []",
    );
    // A refund notified twice, and a shipment notified for a merely confirmed order.
    let mut s = with_paid_order("CONFIRMED", None, &[40]);
    let mut twice = note(300, PAID, "order_refunded");
    twice.ref_id = "r1".into();
    s.notifications
        .sent_events
        .push(twice.notification_id.to_string());
    s.notifications.notifications.push(twice);
    fails_with(
        notifications_delivered,
        &s,
        "but notified of refunds [\"r1\", \"r1\"]",
    );
    let mut s = with_paid_order("CONFIRMED", None, &[]);
    let shipped = note(301, PAID, "order_shipped");
    s.notifications
        .sent_events
        .push(shipped.notification_id.to_string());
    s.notifications.notifications.push(shipped);
    fails_with(
        notifications_delivered,
        &s,
        "is CONFIRMED but was notified order_shipped",
    );
}

#[test]
fn a_customers_cancel_of_a_confirmed_order_was_confirmed_first_and_a_pending_one_not() {
    money_and_notes_pass(&with_paid_order(
        "CANCELLED",
        Some("customer_cancelled"),
        &[300],
    ));
    // The confirmed order's confirmation notification is missing.
    let mut s = with_paid_order("CANCELLED", Some("customer_cancelled"), &[300]);
    s.notifications
        .notifications
        .retain(|n| !(n.order_id == oid(PAID).to_string() && n.kind == "order_confirmed"));
    fails_with(
        notifications_delivered,
        &s,
        "(CANCELLED) has 0 order_confirmed notifications",
    );
    // A customer's cancel that overtook the capture: the payment was voided, the order had
    // been confirmed and notified so; once is right, twice is not.
    let mut s = with_paid_order("CANCELLED", Some("customer_cancelled"), &[]);
    s.payments
        .ledger
        .retain(|r| r.order_id != oid(PAID).to_string());
    s.payments.gateway = None;
    money_and_notes_pass(&s);
    let twice = note(303, PAID, "order_confirmed");
    s.notifications
        .sent_events
        .push(twice.notification_id.to_string());
    s.notifications.notifications.push(twice);
    fails_with(
        notifications_delivered,
        &s,
        "is CANCELLED but was notified order_confirmed",
    );
    // An order cancelled before any capture was never confirmed (the clean snapshot's
    // cancelled orders): a confirmation for it is wrong.
    let mut s = clean();
    let wrong = note(302, NO_STOCK, "order_confirmed");
    s.notifications
        .sent_events
        .push(wrong.notification_id.to_string());
    s.notifications.notifications.push(wrong);
    fails_with(
        notifications_delivered,
        &s,
        "is CANCELLED but was notified order_confirmed",
    );
}

#[test]
fn a_payment_whose_refunded_figure_disagrees_with_the_ledger_is_reported() {
    // The payment row's figure is what the next refund is measured against: if it lagged the
    // ledger, a refund could give back more than was captured.
    let mut s = with_paid_order("DELIVERED", None, &[100]);
    s.payments.payments.last_mut().expect("paid").refunded_cents = 0;
    fails_with(
        money_settled,
        &s,
        "its payment says 0 refunded, the ledger 100",
    );
}

// Stock after the decision: shipments, refunds with restock, adjustments, customer cancels.

const SHIPPED: u128 = 4;

fn ship(id: i64, product: &str, order: u128, quantity: i64) -> MovementRow {
    MovementRow {
        quantity,
        ..mv(id, product, "ship", Some(order), 0)
    }
}

/// `clean()` plus a fourth order that took 3 of sku-a and shipped them, one of which came
/// back by a refund with restock; and an admin's adjustment of +5 sku-b.
fn with_shipment() -> Snapshot {
    let mut s = clean();
    s.orders
        .push(order(SHIPPED, "SHIPPED", None, &[("sku-a", 3)]));
    s.stock.movements.extend([
        mv(6, "sku-a", "restock", None, 3),
        mv(7, "sku-a", "reserve", Some(SHIPPED), -3),
        ship(8, "sku-a", SHIPPED, 3),
        mv(9, "sku-a", "return", Some(SHIPPED), 1),
        mv(10, "sku-b", "adjust", None, 5),
    ]);
    s.stock.products[0].available = 9;
    s.stock.products[1].available = 6;
    s.stock.reservations.push(ReservationRow {
        order_id: oid(SHIPPED).to_string(),
        status: "shipped".into(),
        items: vec![("sku-a".into(), 3)],
    });
    s
}

#[test]
fn shipments_returns_and_adjustments_conserve_stock() {
    let s = with_shipment();
    let c = stock_conserved(&s);
    assert!(c.ok(), "{}", violations(&c));
    assert!(
        c.summary.contains("2 units held by live orders, 3 shipped"),
        "{}",
        c.summary
    );
    let mut delivered = s.clone();
    delivered.orders[3].status = "DELIVERED".into();
    assert!(stock_conserved(&delivered).ok());
}

#[test]
fn a_shipped_order_whose_units_never_left_is_reported() {
    let mut s = with_shipment();
    s.stock.movements.retain(|m| m.kind != "ship");
    s.stock.products[0].reserved = 5;
    fails_with(stock_conserved, &s, "is SHIPPED but still holds");
    fails_with(
        stock_conserved,
        &s,
        "is SHIPPED and shipped {} by the stock ledger",
    );
}

#[test]
fn a_shipped_order_whose_reservation_is_not_shipped_is_reported() {
    let mut s = with_shipment();
    s.stock.reservations[3].status = "reserved".into();
    fails_with(
        stock_conserved,
        &s,
        "is SHIPPED but its reservation is reserved",
    );
}

#[test]
fn a_refund_returning_more_than_shipped_is_reported() {
    let mut s = with_shipment();
    s.stock
        .movements
        .push(mv(11, "sku-a", "return", Some(SHIPPED), 3));
    s.stock.products[0].available = 12;
    fails_with(
        stock_conserved,
        &s,
        "4 of sku-a returned by refunds, only 3 shipped",
    );
}

#[test]
fn the_shelfs_reserved_figure_must_match_what_orders_hold() {
    let mut s = clean();
    s.stock.products[0].reserved = 3;
    fails_with(
        stock_conserved,
        &s,
        "the shelf says 3 reserved, live orders hold 2",
    );
}

#[test]
fn an_adjustment_the_shelf_never_saw_is_reported() {
    let mut s = with_shipment();
    s.stock.products[1].available = 1; // the +5 is in the ledger only
    fails_with(
        stock_conserved,
        &s,
        "sku-b: shelf says 1 available, the stock ledger says 6",
    );
    fails_with(stock_conserved, &s, "sku-b: received 6");
}

#[test]
fn a_ship_movement_that_moves_available_is_malformed() {
    let mut s = with_shipment();
    s.stock.movements[7].delta = -1;
    fails_with(
        stock_conserved,
        &s,
        "movement 8 (ship -1 of sku-a) is malformed",
    );
}

#[test]
fn a_customer_cancel_of_a_confirmed_order_must_give_its_units_back() {
    let mut s = clean();
    s.orders[0].status = "CANCELLED".into();
    s.orders[0].reason = Some("customer_cancelled".into());
    // Not released: the order still holds 2.
    fails_with(stock_conserved, &s, "is CANCELLED but still holds");
    s.stock
        .movements
        .push(mv(6, "sku-a", "release", Some(CONFIRMED), 2));
    s.stock.products[0].available = 10;
    s.stock.products[0].reserved = 0;
    s.stock.reservations[0].status = "released".into();
    let c = stock_conserved(&s);
    assert!(c.ok(), "{}", violations(&c));
}

#[test]
fn a_cancelled_order_that_shipped_is_reported() {
    let mut s = with_shipment();
    s.orders[3].status = "CANCELLED".into();
    fails_with(stock_conserved, &s, "is CANCELLED but shipped");
}

#[test]
fn a_refund_restock_before_shipping_lowers_what_a_confirmed_order_holds() {
    let mut s = clean();
    s.stock
        .movements
        .push(mv(6, "sku-a", "refund_release", Some(CONFIRMED), 1));
    s.stock.products[0].available = 9;
    s.stock.products[0].reserved = 1;
    s.stock.reservations[0].items = vec![("sku-a".into(), 1)];
    let c = stock_conserved(&s);
    assert!(c.ok(), "{}", violations(&c));
    // The same unit back on the shelf by a plain release is not a refund: it is a leak
    // from a CONFIRMED order.
    s.stock.movements[5].kind = "release".into();
    fails_with(
        stock_conserved,
        &s,
        "is CONFIRMED and holds {\"sku-a\": 1} by the stock ledger, not {\"sku-a\": 2}",
    );
}
