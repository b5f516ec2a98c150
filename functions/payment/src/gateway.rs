//! The payment gateway port and a simulated gateway answering like the well-known
//! providers' test tokens do (`tok_visa` approves, `tok_chargeDeclined` declines, ...).

use async_trait::async_trait;

/// An approved authorization: the gateway's reference and the card's last four digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub payment_id: uuid::Uuid,
    pub last4: String,
}

/// A declined authorization with the gateway's code (`card_declined`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    pub code: String,
}

/// What the payment functions need from a gateway. Authorize answers approve or decline;
/// an `Err` from capture or void is an outage (transient: the message is retried).
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    async fn authorize(
        &self,
        token: &str,
        amount_cents: i64,
        currency: &str,
    ) -> Result<Authorization, Decline>;
    async fn capture(
        &self,
        payment_id: uuid::Uuid,
        amount_cents: i64,
        currency: &str,
    ) -> anyhow::Result<()>;
    async fn void(&self, payment_id: uuid::Uuid) -> anyhow::Result<()>;
}

/// Decides by test token, never fails, keeps no state.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulatedGateway;

impl SimulatedGateway {
    /// The answer for a token: last four digits on approval, the decline code otherwise.
    pub fn decide(token: &str) -> Result<&'static str, &'static str> {
        match token {
            "tok_visa" => Ok("4242"),
            "tok_mastercard" => Ok("4444"),
            "tok_chargeDeclined" => Err("card_declined"),
            "tok_chargeDeclinedInsufficientFunds" => Err("insufficient_funds"),
            // Other tok_ values, and anything else (which the functions refuse before asking).
            _ => Err("invalid_token"),
        }
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn authorize(
        &self,
        token: &str,
        _amount_cents: i64,
        _currency: &str,
    ) -> Result<Authorization, Decline> {
        match Self::decide(token) {
            Ok(last4) => Ok(Authorization {
                payment_id: uuid::Uuid::now_v7(),
                last4: last4.to_string(),
            }),
            Err(code) => Err(Decline {
                code: code.to_string(),
            }),
        }
    }

    async fn capture(
        &self,
        _payment_id: uuid::Uuid,
        _amount_cents: i64,
        _currency: &str,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    async fn void(&self, _payment_id: uuid::Uuid) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_tokens_approve_or_decline_like_the_providers_do() {
        let gw = SimulatedGateway;
        let table: [(&str, Result<&str, &str>); 6] = [
            ("tok_visa", Ok("4242")),
            ("tok_mastercard", Ok("4444")),
            ("tok_chargeDeclined", Err("card_declined")),
            (
                "tok_chargeDeclinedInsufficientFunds",
                Err("insufficient_funds"),
            ),
            ("tok_unknown", Err("invalid_token")),
            ("tok_", Err("invalid_token")),
        ];
        for (token, expected) in table {
            let got = gw.authorize(token, 1999, "EUR").await;
            match expected {
                Ok(last4) => assert_eq!(got.map(|a| a.last4), Ok(last4.to_string()), "{token}"),
                Err(code) => assert_eq!(
                    got,
                    Err(Decline {
                        code: code.to_string()
                    }),
                    "{token}"
                ),
            }
        }
    }

    #[tokio::test]
    async fn every_approval_gets_its_own_payment_id() {
        let gw = SimulatedGateway;
        let a = gw.authorize("tok_visa", 1, "EUR").await.expect("approved");
        let b = gw.authorize("tok_visa", 1, "EUR").await.expect("approved");
        assert_ne!(a.payment_id, b.payment_id);
    }

    #[tokio::test]
    async fn capture_and_void_always_succeed_in_the_simulation() {
        let gw = SimulatedGateway;
        let id = uuid::Uuid::now_v7();
        assert!(gw.capture(id, 100, "EUR").await.is_ok());
        assert!(gw.void(id).await.is_ok());
    }
}
