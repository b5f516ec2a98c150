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
        PaymentStatus::Captured => Ok(ConfirmAction::Nothing),
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
    Nothing,
}

/// `Err` is a contract violation (the message gets parked with that reason).
pub fn on_order_cancelled(status: PaymentStatus) -> Result<CancelAction, String> {
    match status {
        PaymentStatus::Authorized => Ok(CancelAction::Void),
        PaymentStatus::Pending => Ok(CancelAction::Tombstone),
        PaymentStatus::Declined | PaymentStatus::Voided | PaymentStatus::Cancelled => {
            Ok(CancelAction::Nothing)
        }
        PaymentStatus::Captured => Err("cancel after capture: needs a refund".into()),
    }
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
        for s in [Pending, Declined, Voided, Cancelled] {
            let err = on_order_confirmed(s).unwrap_err();
            assert!(
                err.contains("order confirmed without an authorized payment"),
                "{s}: {err}"
            );
        }
    }

    #[test]
    fn cancel_voids_tombstones_ignores_or_refuses_by_status() {
        assert_eq!(on_order_cancelled(Authorized), Ok(CancelAction::Void));
        assert_eq!(on_order_cancelled(Pending), Ok(CancelAction::Tombstone));
        for s in [Declined, Voided, Cancelled] {
            assert_eq!(on_order_cancelled(s), Ok(CancelAction::Nothing), "{s}");
        }
        assert_eq!(
            on_order_cancelled(Captured),
            Err("cancel after capture: needs a refund".to_string())
        );
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
