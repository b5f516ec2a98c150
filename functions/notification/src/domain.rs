//! Pure decisions: which notification an order event asks for, and its text.

use shared::contracts::{
    CancelReason, NotificationKind, OrderCancelled, OrderConfirmed, OrderCreated, OrderShipped,
    Payload, PaymentRefunded,
};

/// The kinds of customer notification: one per order and kind, except refunds (one per
/// refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OrderReceived,
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    OrderDelivered,
    OrderRefunded,
}

impl Kind {
    /// The name stored in the database and sent to webhooks.
    pub fn as_str(self) -> &'static str {
        self.proto().api_name()
    }

    pub fn proto(self) -> NotificationKind {
        match self {
            Kind::OrderReceived => NotificationKind::OrderReceived,
            Kind::OrderConfirmed => NotificationKind::OrderConfirmed,
            Kind::OrderCancelled => NotificationKind::OrderCancelled,
            Kind::OrderShipped => NotificationKind::OrderShipped,
            Kind::OrderDelivered => NotificationKind::OrderDelivered,
            Kind::OrderRefunded => NotificationKind::OrderRefunded,
        }
    }
}

/// A notification to create: who, what kind, and the rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub order_id: String,
    pub kind: Kind,
    /// Which one of the order's notifications of this kind: the refund id of a refund, ''
    /// for a state, which is reached once.
    pub ref_id: String,
    pub user_id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// Why an event cannot become a notification (the message is parked with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unexpected event type {0}")]
    UnexpectedEvent(&'static str),
    #[error("{0} has no order_id")]
    NoOrderId(&'static str),
    #[error("{0} has no customer_email to notify")]
    NoRecipient(&'static str),
    #[error("{0} has no refund_id")]
    NoRefundId(&'static str),
}

/// The notification `payload` asks for.
pub fn draft(payload: &Payload) -> Result<Draft, Rejection> {
    let event = payload.event_type();
    let mut ref_id = String::new();
    let (order_id, user_id, recipient, kind, (subject, body)) = match payload {
        Payload::OrderCreated(e) => (
            &e.order_id,
            &e.user_id,
            &e.customer_email,
            Kind::OrderReceived,
            received(e),
        ),
        Payload::OrderConfirmed(e) => (
            &e.order_id,
            &e.user_id,
            &e.customer_email,
            Kind::OrderConfirmed,
            confirmed(e),
        ),
        Payload::OrderCancelled(e) => (
            &e.order_id,
            &e.user_id,
            &e.customer_email,
            Kind::OrderCancelled,
            cancelled(e),
        ),
        Payload::OrderShipped(e) => (
            &e.order_id,
            &e.user_id,
            &e.customer_email,
            Kind::OrderShipped,
            shipped(e),
        ),
        Payload::OrderDelivered(e) => (
            &e.order_id,
            &e.user_id,
            &e.customer_email,
            Kind::OrderDelivered,
            (
                format!("Your order {} was delivered", e.order_id),
                format!(
                    "Your order {} was delivered. We hope you enjoy it.",
                    e.order_id
                ),
            ),
        ),
        Payload::PaymentRefunded(e) => {
            if e.refund_id.trim().is_empty() {
                return Err(Rejection::NoRefundId(event));
            }
            ref_id = e.refund_id.clone();
            (
                &e.order_id,
                &e.user_id,
                &e.customer_email,
                Kind::OrderRefunded,
                refunded(e),
            )
        }
        _ => return Err(Rejection::UnexpectedEvent(event)),
    };
    if order_id.trim().is_empty() {
        return Err(Rejection::NoOrderId(event));
    }
    if recipient.trim().is_empty() {
        return Err(Rejection::NoRecipient(event));
    }
    Ok(Draft {
        order_id: order_id.clone(),
        kind,
        ref_id,
        user_id: user_id.clone(),
        recipient: recipient.trim().to_string(),
        subject,
        body,
    })
}

fn received(e: &OrderCreated) -> (String, String) {
    let total = format_money(e.total_cents, &e.currency);
    (
        format!("We received your order {}", e.order_id),
        format!(
            "Thank you for your order {}. Total: {total}. We are checking stock and payment and will \
             write again when it is confirmed.",
            e.order_id
        ),
    )
}

fn confirmed(e: &OrderConfirmed) -> (String, String) {
    let total = format_money(e.total_cents, &e.currency);
    (
        format!("Your order {} is confirmed", e.order_id),
        format!(
            "Good news: your order {} is confirmed and your payment of {total} was taken.",
            e.order_id
        ),
    )
}

fn cancelled(e: &OrderCancelled) -> (String, String) {
    let reason = CancelReason::try_from(e.reason).unwrap_or(CancelReason::Unspecified);
    let body = if reason == CancelReason::CustomerCancelled {
        // A confirmed order was paid: the refund has its own notification.
        format!(
            "Your order {} was cancelled as you asked. Any payment taken for it is refunded in \
             full.",
            e.order_id
        )
    } else {
        format!(
            "We are sorry: your order {} was cancelled because {}. You have not been charged.",
            e.order_id,
            human_reason(reason)
        )
    };
    (format!("Your order {} was cancelled", e.order_id), body)
}

fn shipped(e: &OrderShipped) -> (String, String) {
    let tracking = match (e.carrier.trim(), e.tracking_number.trim()) {
        ("", "") => String::new(),
        (carrier, "") => format!(" with {carrier}"),
        ("", number) => format!(" (tracking number {number})"),
        (carrier, number) => format!(" with {carrier} (tracking number {number})"),
    };
    (
        format!("Your order {} is on its way", e.order_id),
        format!("Your order {} was shipped{tracking}.", e.order_id),
    )
}

fn refunded(e: &PaymentRefunded) -> (String, String) {
    let amount = format_money(e.amount_cents, &e.currency);
    (
        format!("A refund of {amount} for your order {}", e.order_id),
        format!(
            "We refunded {amount} for your order {} to your card. It can take a few days to \
             show on your statement.",
            e.order_id
        ),
    )
}

/// The customer-facing explanation of a cancellation.
pub fn human_reason(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::OutOfStock => "an item is out of stock",
        CancelReason::PaymentDeclined => "the payment was declined",
        CancelReason::Expired => "it could not be completed in time (expired)",
        CancelReason::CustomerCancelled => "you cancelled it",
        CancelReason::Unspecified => "it could not be completed",
    }
}

/// Minor units as a decimal amount with its currency: `3998, "EUR"` -> `"39.98 EUR"`.
/// Uses the ISO 4217 exponent for the currencies that do not have two decimals.
pub fn format_money(minor: i64, currency: &str) -> String {
    let currency = currency.trim().to_ascii_uppercase();
    let exponent = minor_unit_exponent(&currency);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let amount = if exponent == 0 {
        abs.to_string()
    } else {
        let scale = 10u64.pow(exponent);
        format!(
            "{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = exponent as usize
        )
    };
    if currency.is_empty() {
        format!("{sign}{amount}")
    } else {
        format!("{sign}{amount} {currency}")
    }
}

fn minor_unit_exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::contracts::{OrderLine, StockReserved};

    fn created() -> OrderCreated {
        OrderCreated {
            order_id: "ord-1".into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
            items: vec![OrderLine {
                product_id: "sku-1".into(),
                quantity: 2,
                unit_price_cents: 1999,
            }],
            total_cents: 3998,
            currency: "EUR".into(),
            payment_token_sealed: shared::payment_token::TokenKeys::development()
                .seal("ord-1", "tok_visa"),
            payment_ref: shared::payment_token::reference("tok_visa"),
            ..Default::default()
        }
    }

    fn cancelled_for(reason: CancelReason) -> Payload {
        Payload::OrderCancelled(OrderCancelled {
            order_id: "ord-1".into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
            reason: reason as i32,
        })
    }

    #[test]
    fn money_is_formatted_from_minor_units_with_its_currency() {
        assert_eq!(format_money(3998, "EUR"), "39.98 EUR");
        assert_eq!(format_money(5, "usd"), "0.05 USD");
        assert_eq!(format_money(100, "GBP"), "1.00 GBP");
        assert_eq!(format_money(0, "EUR"), "0.00 EUR");
        assert_eq!(format_money(-250, "EUR"), "-2.50 EUR");
        assert_eq!(format_money(1500, "JPY"), "1500 JPY");
        assert_eq!(format_money(1234, "KWD"), "1.234 KWD");
        assert_eq!(format_money(1234, ""), "12.34");
    }

    #[test]
    fn an_order_created_becomes_an_order_received_note_with_its_total() {
        let d = draft(&Payload::OrderCreated(created())).expect("draft");
        assert_eq!(d.kind, Kind::OrderReceived);
        assert_eq!(d.kind.as_str(), "order_received");
        assert_eq!(
            (
                d.order_id.as_str(),
                d.user_id.as_str(),
                d.recipient.as_str()
            ),
            ("ord-1", "u-1", "ada@example.com")
        );
        assert!(d.subject.contains("ord-1"), "{}", d.subject);
        assert!(
            d.body.contains("ord-1") && d.body.contains("39.98 EUR"),
            "{}",
            d.body
        );
    }

    #[test]
    fn an_order_confirmed_becomes_an_order_confirmed_note_with_its_total() {
        let d = draft(&Payload::OrderConfirmed(OrderConfirmed {
            order_id: "ord-2".into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
            total_cents: 1500,
            currency: "JPY".into(),
        }))
        .expect("draft");
        assert_eq!(d.kind.as_str(), "order_confirmed");
        assert!(
            d.subject.contains("ord-2") && d.subject.contains("confirmed"),
            "{}",
            d.subject
        );
        assert!(d.body.contains("1500 JPY"), "{}", d.body);
    }

    #[test]
    fn a_cancellation_says_why_in_words() {
        for (reason, words) in [
            (CancelReason::OutOfStock, "out of stock"),
            (CancelReason::PaymentDeclined, "payment was declined"),
            (CancelReason::Expired, "expired"),
            (CancelReason::Unspecified, "could not be completed"),
        ] {
            let d = draft(&cancelled_for(reason)).expect("draft");
            assert_eq!(d.kind.as_str(), "order_cancelled");
            assert!(
                d.subject.contains("ord-1") && d.subject.contains("cancelled"),
                "{}",
                d.subject
            );
            assert!(d.body.contains(words), "{reason:?}: {}", d.body);
        }
    }

    #[test]
    fn an_unknown_cancel_reason_number_still_renders() {
        let Payload::OrderCancelled(mut e) = cancelled_for(CancelReason::Expired) else {
            unreachable!()
        };
        e.reason = 99;
        let d = draft(&Payload::OrderCancelled(e)).expect("draft");
        assert!(d.body.contains("could not be completed"), "{}", d.body);
    }

    #[test]
    fn a_customers_cancel_says_so_and_promises_the_refund() {
        let d = draft(&cancelled_for(CancelReason::CustomerCancelled)).expect("draft");
        assert!(
            d.body.contains("as you asked") && d.body.contains("refunded in full"),
            "{}",
            d.body
        );
        assert!(!d.body.contains("not been charged"), "{}", d.body);
    }

    #[test]
    fn shipped_and_delivered_are_one_per_order_and_name_the_carrier() {
        let d = draft(&Payload::OrderShipped(OrderShipped {
            order_id: "ord-1".into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
            carrier: "DHL".into(),
            tracking_number: "JD0001".into(),
            items: vec![],
        }))
        .expect("draft");
        assert_eq!((d.kind.as_str(), d.ref_id.as_str()), ("order_shipped", ""));
        assert!(
            d.body.contains("DHL") && d.body.contains("JD0001"),
            "{}",
            d.body
        );
        let d = draft(&Payload::OrderDelivered(
            shared::contracts::OrderDelivered {
                order_id: "ord-1".into(),
                user_id: "u-1".into(),
                customer_email: "ada@example.com".into(),
            },
        ))
        .expect("draft");
        assert_eq!(
            (d.kind.as_str(), d.ref_id.as_str()),
            ("order_delivered", "")
        );
    }

    #[test]
    fn a_refund_is_one_notification_per_refund_with_its_amount() {
        let refund = PaymentRefunded {
            order_id: "ord-1".into(),
            refund_id: "r-1".into(),
            payment_id: "p-1".into(),
            amount_cents: 1200,
            currency: "EUR".into(),
            gateway_refund_id: "re_1".into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
        };
        let d = draft(&Payload::PaymentRefunded(refund.clone())).expect("draft");
        assert_eq!(
            (d.kind.as_str(), d.ref_id.as_str()),
            ("order_refunded", "r-1")
        );
        assert!(d.body.contains("12.00 EUR"), "{}", d.body);
        let no_id = PaymentRefunded {
            refund_id: " ".into(),
            ..refund
        };
        assert_eq!(
            draft(&Payload::PaymentRefunded(no_id)).expect_err("rejected"),
            Rejection::NoRefundId("payment.refunded")
        );
    }

    #[test]
    fn other_events_are_rejected_by_type() {
        let err = draft(&Payload::StockReserved(StockReserved {
            order_id: "o".into(),
            items: vec![],
        }))
        .expect_err("rejected");
        assert_eq!(err.to_string(), "unexpected event type stock.reserved");
    }

    #[test]
    fn an_event_without_order_id_or_recipient_is_rejected() {
        let mut e = created();
        e.order_id = " ".into();
        assert_eq!(
            draft(&Payload::OrderCreated(e)).expect_err("rejected"),
            Rejection::NoOrderId("order.created")
        );
        let mut e = created();
        e.customer_email = String::new();
        assert_eq!(
            draft(&Payload::OrderCreated(e)).expect_err("rejected"),
            Rejection::NoRecipient("order.created")
        );
    }
}
