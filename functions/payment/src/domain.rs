//! Pure payment decisions: what to do with an event given the payment row's status.
//! No I/O; the functions fetch the status, ask here, then act.

use std::fmt;

/// The status column of `payments.payments`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Row created by the first event to arrive; nothing decided yet.
    Pending,
    Authorized,
    Declined,
    Captured,
    Voided,
    /// Tombstone: the order was cancelled before its payment was processed.
    Cancelled,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Authorized => "authorized",
            PaymentStatus::Declined => "declined",
            PaymentStatus::Captured => "captured",
            PaymentStatus::Voided => "voided",
            PaymentStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => PaymentStatus::Pending,
            "authorized" => PaymentStatus::Authorized,
            "declined" => PaymentStatus::Declined,
            "captured" => PaymentStatus::Captured,
            "voided" => PaymentStatus::Voided,
            "cancelled" => PaymentStatus::Cancelled,
            _ => return None,
        })
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `order.created` does to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessAction {
    /// Ask the gateway for an authorization and record its answer.
    Authorize,
    /// Already decided, or cancelled before we got here: change and publish nothing.
    Nothing,
}

pub fn on_order_created(status: PaymentStatus) -> ProcessAction {
    match status {
        PaymentStatus::Pending => ProcessAction::Authorize,
        PaymentStatus::Authorized
        | PaymentStatus::Declined
        | PaymentStatus::Captured
        | PaymentStatus::Voided
        | PaymentStatus::Cancelled => ProcessAction::Nothing,
    }
}

/// What `order.confirmed` does to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmAction {
    Capture,
    Nothing,
}

/// `Err` is a contract violation (the message gets parked with that reason).
pub fn on_order_confirmed(status: PaymentStatus) -> Result<ConfirmAction, String> {
    match status {
        PaymentStatus::Authorized => Ok(ConfirmAction::Capture),
        // Voided: the customer's cancel of the confirmed order overtook the confirmation (a
        // redelivery can reorder them); the order is cancelled, so nothing is taken.
        PaymentStatus::Captured | PaymentStatus::Voided => Ok(ConfirmAction::Nothing),
        other => Err(format!(
            "order confirmed without an authorized payment (payment is {other})"
        )),
    }
}

/// What `order.cancelled` does to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAction {
    /// Release the authorization at the gateway.
    Void,
    /// Nothing processed yet: leave a tombstone so the late `order.created` is ignored.
    Tombstone,
    /// Captured already (a customer's cancel of a confirmed order, or a cancel that reached
    /// us after the capture): give back what is captured and not yet refunded.
    Refund {
        amount_cents: i64,
    },
    Nothing,
}

/// What `order.cancelled` does to a payment whose captures not yet refunded come to
/// `refundable` minor units.
pub fn on_order_cancelled(status: PaymentStatus, refundable: i64) -> CancelAction {
    match status {
        PaymentStatus::Authorized => CancelAction::Void,
        PaymentStatus::Pending => CancelAction::Tombstone,
        PaymentStatus::Captured if refundable > 0 => CancelAction::Refund {
            amount_cents: refundable,
        },
        // Refunded in full already (an earlier cancel, or admin refunds that took it all).
        PaymentStatus::Captured
        | PaymentStatus::Declined
        | PaymentStatus::Voided
        | PaymentStatus::Cancelled => CancelAction::Nothing,
    }
}

/// What `refund.requested` does to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundAction {
    /// Ask the gateway to give the amount back.
    Refund,
    /// Refuse without asking the gateway; the reason goes in `payment.refund_failed`.
    Fail(&'static str),
    /// Not captured yet (the order was just confirmed, the capture is on its way): try
    /// again later, as for an outage.
    NotYet,
}

/// The reason of a refund above what is captured and not yet refunded.
pub const EXCEEDS_CAPTURED: &str = "exceeds_captured";
/// The reason of a refund in another currency than the payment's.
pub const CURRENCY_MISMATCH: &str = "currency_mismatch";

/// Decides a refund of `amount_cents` in `currency` of a payment of `captured` minor
/// units (in `payment_currency`) of which `refunded` were given back already.
pub fn on_refund_requested(
    status: PaymentStatus,
    captured: i64,
    refunded: i64,
    payment_currency: &str,
    amount_cents: i64,
    currency: &str,
) -> RefundAction {
    match status {
        PaymentStatus::Pending | PaymentStatus::Authorized => RefundAction::NotYet,
        // A final payment that never took money: nothing to give back.
        PaymentStatus::Declined | PaymentStatus::Voided | PaymentStatus::Cancelled => {
            RefundAction::Fail(EXCEEDS_CAPTURED)
        }
        PaymentStatus::Captured if !currency.is_empty() && currency != payment_currency => {
            RefundAction::Fail(CURRENCY_MISMATCH)
        }
        PaymentStatus::Captured if amount_cents > captured - refunded => {
            RefundAction::Fail(EXCEEDS_CAPTURED)
        }
        PaymentStatus::Captured => RefundAction::Refund,
    }
}

/// Checks what `refund.requested` carries; the error is the parking reason.
pub fn validate_refund(order_id: &str, refund_id: &str, amount_cents: i64) -> Result<(), String> {
    if order_id.trim().is_empty() {
        return Err("refund.requested without an order_id".into());
    }
    if refund_id.trim().is_empty() {
        return Err("refund.requested without a refund_id".into());
    }
    if amount_cents <= 0 {
        return Err(format!(
            "refund.requested for {amount_cents}: a refund is of a positive amount"
        ));
    }
    Ok(())
}

/// The token to authorize `order` with: opened from `payment_token_sealed`, or, for a
/// message published before tokens were sealed, the retired clear-text field. The error is
/// the parking reason (it never contains the token).
pub fn token_of(
    order: &shared::contracts::OrderCreated,
    keys: &shared::payment_token::TokenKeys,
) -> Result<String, String> {
    if !order.payment_token_sealed.is_empty() {
        return keys
            .open(&order.order_id, &order.payment_token_sealed)
            .map_err(|e| e.to_string());
    }
    if !order.payment_token.is_empty() {
        return Ok(order.payment_token.clone());
    }
    Err("order.created carries no payment token".into())
}

/// Checks what `order.created` carries for the payment; the error is the parking reason.
pub fn validate_charge(
    order_id: &str,
    token: &str,
    amount_cents: i64,
    currency: &str,
) -> Result<(), String> {
    if order_id.trim().is_empty() {
        return Err("order.created without an order_id".into());
    }
    if !token.starts_with("tok_") {
        return Err("payment token must start with tok_ (card numbers are never accepted)".into());
    }
    if amount_cents < 0 {
        return Err(format!("negative amount {amount_cents}"));
    }
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "invalid currency {currency:?} (3 uppercase letters)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentStatus::*;

    const ALL: [PaymentStatus; 6] = [Pending, Authorized, Declined, Captured, Voided, Cancelled];

    #[test]
    fn statuses_round_trip_through_their_column_names() {
        for s in ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(PaymentStatus::parse("refunded"), None);
    }

    #[test]
    fn only_a_pending_payment_is_authorized_on_order_created() {
        for s in ALL {
            let expected = if s == Pending {
                ProcessAction::Authorize
            } else {
                ProcessAction::Nothing
            };
            assert_eq!(on_order_created(s), expected, "{s}");
        }
    }

    #[test]
    fn confirm_captures_an_authorization_once_and_refuses_anything_else() {
        assert_eq!(on_order_confirmed(Authorized), Ok(ConfirmAction::Capture));
        assert_eq!(on_order_confirmed(Captured), Ok(ConfirmAction::Nothing));
        assert_eq!(
            on_order_confirmed(Voided),
            Ok(ConfirmAction::Nothing),
            "a cancel that overtook the confirmation"
        );
        for s in [Pending, Declined, Cancelled] {
            let err = on_order_confirmed(s).unwrap_err();
            assert!(
                err.contains("order confirmed without an authorized payment"),
                "{s}: {err}"
            );
        }
    }

    #[test]
    fn cancel_voids_tombstones_refunds_what_is_left_or_ignores_by_status() {
        assert_eq!(on_order_cancelled(Authorized, 0), CancelAction::Void);
        assert_eq!(on_order_cancelled(Pending, 0), CancelAction::Tombstone);
        for s in [Declined, Voided, Cancelled] {
            assert_eq!(on_order_cancelled(s, 0), CancelAction::Nothing, "{s}");
        }
        assert_eq!(
            on_order_cancelled(Captured, 700),
            CancelAction::Refund { amount_cents: 700 }
        );
        assert_eq!(
            on_order_cancelled(Captured, 0),
            CancelAction::Nothing,
            "refunded in full already"
        );
    }

    #[test]
    fn a_refund_is_made_only_within_what_is_captured_and_not_yet_refunded() {
        let decide = |status, refunded, amount| {
            on_refund_requested(status, 1000, refunded, "EUR", amount, "EUR")
        };
        assert_eq!(decide(Captured, 0, 1000), RefundAction::Refund);
        assert_eq!(decide(Captured, 600, 400), RefundAction::Refund);
        assert_eq!(
            decide(Captured, 600, 401),
            RefundAction::Fail(EXCEEDS_CAPTURED)
        );
        assert_eq!(
            decide(Captured, 0, 1001),
            RefundAction::Fail(EXCEEDS_CAPTURED)
        );
        for s in [Pending, Authorized] {
            assert_eq!(decide(s, 0, 1), RefundAction::NotYet, "{s}");
        }
        for s in [Declined, Voided, Cancelled] {
            assert_eq!(decide(s, 0, 1), RefundAction::Fail(EXCEEDS_CAPTURED), "{s}");
        }
        assert_eq!(
            on_refund_requested(Captured, 1000, 0, "EUR", 10, "USD"),
            RefundAction::Fail(CURRENCY_MISMATCH)
        );
        assert_eq!(
            on_refund_requested(Captured, 1000, 0, "EUR", 10, ""),
            RefundAction::Refund,
            "no currency means the payment's"
        );
    }

    #[test]
    fn a_refund_needs_an_order_a_refund_id_and_a_positive_amount() {
        assert!(validate_refund("o1", "r1", 1).is_ok());
        assert!(validate_refund(" ", "r1", 1).is_err());
        assert!(validate_refund("o1", "", 1).is_err());
        assert!(validate_refund("o1", "r1", 0).is_err());
        assert!(validate_refund("o1", "r1", -5).is_err());
    }

    #[test]
    fn the_token_is_opened_from_its_seal_or_read_from_an_older_clear_text_message() {
        use shared::contracts::OrderCreated;
        use shared::payment_token::TokenKeys;
        let keys = TokenKeys::development();
        let sealed = OrderCreated {
            order_id: "o1".into(),
            payment_token_sealed: keys.seal("o1", "tok_visa"),
            payment_ref: "tok_...visa".into(),
            ..Default::default()
        };
        assert_eq!(token_of(&sealed, &keys).as_deref(), Ok("tok_visa"));
        let legacy = OrderCreated {
            order_id: "o1".into(),
            payment_token: "tok_visa".into(),
            ..Default::default()
        };
        assert_eq!(token_of(&legacy, &keys).as_deref(), Ok("tok_visa"));
        let moved = OrderCreated {
            order_id: "o2".into(),
            ..sealed
        };
        let err = token_of(&moved, &keys).expect_err("bound to o1");
        assert!(err.contains("tampered or moved"), "{err}");
        let none = OrderCreated {
            order_id: "o1".into(),
            ..Default::default()
        };
        assert!(token_of(&none, &keys).is_err());
    }

    #[test]
    fn charges_need_a_tok_token_a_non_negative_amount_and_a_currency() {
        assert!(validate_charge("o1", "tok_visa", 1999, "EUR").is_ok());
        assert!(validate_charge("o1", "tok_anything", 0, "USD").is_ok());
        assert!(
            validate_charge("o1", "4242424242424242", 1999, "EUR")
                .unwrap_err()
                .contains("tok_")
        );
        assert!(validate_charge("", "tok_visa", 1999, "EUR").is_err());
        assert!(validate_charge("o1", "tok_visa", -1, "EUR").is_err());
        assert!(validate_charge("o1", "tok_visa", 1, "eur").is_err());
        assert!(validate_charge("o1", "tok_visa", 1, "EURO").is_err());
    }
}
