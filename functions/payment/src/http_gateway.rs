//! `HttpGateway`: the `PaymentGateway` port over a real provider's HTTP API, in the
//! PaymentIntents style (Stripe's shape, which most providers' APIs resemble):
//!
//! | port | request |
//! |---|---|
//! | authorize | `POST /v1/payment_intents` `amount, currency, payment_method=<token>, confirm=true, capture_method=manual` |
//! | capture | `POST /v1/payment_intents/{id}/capture` `amount_to_capture` |
//! | void | `POST /v1/payment_intents/{id}/cancel` |
//! | refund | `POST /v1/refunds` `payment_intent={id}, amount` |
//!
//! Bodies are form-encoded, the API key goes as a bearer token, and every call carries the
//! port's idempotency key as `Idempotency-Key`: the provider answers a repeated key with its
//! first answer, so a retry here, or a redelivered event later, never charges twice.
//!
//! Answers: 2xx is success; 402 (a `card_error`) is a decline with the provider's
//! `decline_code` or `code`, and so is any other 4xx of an authorization except those about
//! us (401/403 a bad key, 409 a concurrent request with the key, 429 rate limited), which are
//! outages like 5xx, timeouts and refused connections. Outages are retried here a few times
//! with backoff and the same key, then reported as `Unavailable` / `Err`, so the message is
//! retried later (same key again). The URL must be https (plain http to a loopback host for
//! local stand-ins); connect and total timeouts are bounded. Errors never carry the API key,
//! the token or the URL.

use crate::gateway::{
    Authorization, AuthorizeError, AuthorizeRequest, Decline, PaymentGateway, Refund, RefundError,
    SettleRequest,
};
use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use std::time::Duration;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A provider can take seconds to confirm a payment with the card network.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts of one call here before it is left to the message's own retry.
pub const MAX_ATTEMPTS: u32 = 3;
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

pub struct HttpGateway {
    client: reqwest::Client,
    base: reqwest::Url,
    api_key: String,
}

/// What one call came to, after the retries.
enum Answer {
    Ok(serde_json::Value),
    /// The provider refused the request itself: status and its JSON error object.
    Refused(u16, serde_json::Value),
    Outage(String),
}

/// Whether a status is about us or the provider rather than the request: retried.
fn transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 409 | 429)
}

impl HttpGateway {
    /// `base_url` is the API root (`https://api.provider.example`); `api_key` its secret key.
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, String> {
        let mut base = shared::config::outbound_url(base_url)
            .map_err(|e| format!("PAYMENT_GATEWAY_URL {e}"))?;
        // Paths are joined relative to the base, so a base with a path prefix keeps it.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if api_key.trim().is_empty() {
            return Err("PAYMENT_GATEWAY_API_KEY is empty".into());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("the payment gateway client: {}", e.without_url()))?;
        Ok(HttpGateway {
            client,
            base,
            api_key: api_key.trim().to_string(),
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        self.base
            .join(path)
            .map_err(|_| "the payment gateway path is not a URL".to_string())
    }

    /// One call, retried on outages with the same key and body.
    async fn call(&self, path: &str, key: &str, form: &[(&str, String)]) -> Answer {
        let url = match self.url(path) {
            Ok(url) => url,
            Err(e) => return Answer::Outage(e),
        };
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            let sent = self
                .client
                .post(url.clone())
                .bearer_auth(&self.api_key)
                .header("Idempotency-Key", key)
                .form(form)
                .send()
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                // `without_url`: errors end up in logs and parked messages.
                Err(e) => {
                    last = format!("payment gateway unreachable: {}", e.without_url());
                    continue;
                }
            };
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            if status.is_success() {
                return Answer::Ok(body);
            }
            if transient(status) {
                last = format!("payment gateway answered {status}");
                tracing::info!(idempotency_key = key, attempt, %status, "payment gateway call will be retried");
                continue;
            }
            return Answer::Refused(status.as_u16(), body["error"].clone());
        }
        Answer::Outage(last)
    }

    /// A capture, void or refund: anything but success is an error the message retries.
    async fn settle(
        &self,
        what: &str,
        path: &str,
        req: &SettleRequest<'_>,
        form: &[(&str, String)],
    ) -> anyhow::Result<()> {
        match self.call(path, req.idempotency_key, form).await {
            Answer::Ok(_) => Ok(()),
            Answer::Refused(status, error) => anyhow::bail!(
                "payment gateway refused the {what} of order {} ({status} {})",
                req.order_id,
                error_code(&error)
            ),
            Answer::Outage(e) => anyhow::bail!("{what}: {e}"),
        }
    }
}

/// The provider's code for a refusal: `decline_code` first (the card network's reason),
/// then `code`; only a short code-like word, since it lands in events and logs.
fn error_code(error: &serde_json::Value) -> String {
    let code = ["decline_code", "code", "type"]
        .iter()
        .find_map(|k| error[*k].as_str().filter(|s| !s.is_empty()))
        .unwrap_or("declined");
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if clean.is_empty() {
        "declined".into()
    } else {
        clean
    }
}

/// Our payment id for the provider's: the same intent always gets the same id, so a call
/// repeated under its key (its first answer back) records the same payment.
fn payment_id_for(provider_ref: &str) -> uuid::Uuid {
    let digest = Sha256::digest(provider_ref.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// An id as one path segment: unreserved characters as they are, anything else escaped.
fn path_segment(id: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn authorize(&self, req: AuthorizeRequest<'_>) -> Result<Authorization, AuthorizeError> {
        let form = [
            ("amount", req.amount_cents.to_string()),
            ("currency", req.currency.to_ascii_lowercase()),
            ("payment_method", req.token.to_string()),
            ("confirm", "true".into()),
            ("capture_method", "manual".into()),
            ("metadata[order_id]", req.order_id.to_string()),
            ("expand[]", "latest_charge".into()),
        ];
        match self
            .call("v1/payment_intents", req.idempotency_key, &form)
            .await
        {
            Answer::Ok(intent) => {
                let provider_ref = intent["id"].as_str().unwrap_or_default().to_string();
                let status = intent["status"].as_str().unwrap_or_default();
                if provider_ref.is_empty() {
                    return Err(AuthorizeError::Unavailable(anyhow::anyhow!(
                        "payment gateway answered without an intent id"
                    )));
                }
                if status != "requires_capture" {
                    // Confirmed but not authorized (3-D Secure wanted, processing): no
                    // money is held, so the order cannot go on with this token.
                    return Err(AuthorizeError::Declined(Decline {
                        code: error_code(&serde_json::json!({ "code": status })),
                    }));
                }
                let last4 = intent["latest_charge"]["payment_method_details"]["card"]["last4"]
                    .as_str()
                    .filter(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()))
                    .unwrap_or_default()
                    .to_string();
                Ok(Authorization {
                    payment_id: payment_id_for(&provider_ref),
                    provider_ref,
                    last4,
                })
            }
            Answer::Refused(_, error) => Err(AuthorizeError::Declined(Decline {
                code: error_code(&error),
            })),
            Answer::Outage(e) => Err(AuthorizeError::Unavailable(anyhow::anyhow!(e))),
        }
    }

    async fn capture(&self, req: SettleRequest<'_>) -> anyhow::Result<()> {
        let path = format!(
            "v1/payment_intents/{}/capture",
            path_segment(req.provider_ref)
        );
        let form = [("amount_to_capture", req.amount_cents.to_string())];
        self.settle("capture", &path, &req, &form).await
    }

    async fn void(&self, req: SettleRequest<'_>) -> anyhow::Result<()> {
        let path = format!(
            "v1/payment_intents/{}/cancel",
            path_segment(req.provider_ref)
        );
        self.settle("void", &path, &req, &[]).await
    }

    /// A refund the provider refused (402/400: more than is left, an intent that was never
    /// captured) or created as `failed` or `canceled` is declined with its code; one it
    /// created otherwise (`succeeded`, or `pending` while the card network settles it) is
    /// made, and its `re_...` id is what the ledger keeps.
    async fn refund(&self, req: SettleRequest<'_>) -> Result<Refund, RefundError> {
        let form = [
            ("payment_intent", req.provider_ref.to_string()),
            ("amount", req.amount_cents.to_string()),
            ("metadata[order_id]", req.order_id.to_string()),
        ];
        match self.call("v1/refunds", req.idempotency_key, &form).await {
            Answer::Ok(refund) => {
                let id = refund["id"].as_str().unwrap_or_default();
                let status = refund["status"].as_str().unwrap_or_default();
                if id.is_empty() {
                    return Err(RefundError::Unavailable(anyhow::anyhow!(
                        "payment gateway answered a refund without its id"
                    )));
                }
                if matches!(status, "failed" | "canceled") {
                    let reason = refund["failure_reason"].as_str().unwrap_or(status);
                    return Err(RefundError::Declined(Decline {
                        code: error_code(&serde_json::json!({ "code": reason })),
                    }));
                }
                Ok(Refund {
                    gateway_refund_id: id.to_string(),
                })
            }
            Answer::Refused(_, error) => Err(RefundError::Declined(Decline {
                code: error_code(&error),
            })),
            Answer::Outage(e) => Err(RefundError::Unavailable(anyhow::anyhow!("refund: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_prefer_the_decline_code_and_stay_short_words() {
        let e = serde_json::json!({"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"});
        assert_eq!(error_code(&e), "insufficient_funds");
        let e = serde_json::json!({"type": "card_error", "code": "card_declined"});
        assert_eq!(error_code(&e), "card_declined");
        assert_eq!(error_code(&serde_json::Value::Null), "declined");
        let e = serde_json::json!({"code": "a b\n<script>"});
        assert_eq!(error_code(&e), "abscript");
    }

    #[test]
    fn the_same_intent_always_gets_the_same_payment_id() {
        assert_eq!(payment_id_for("pi_123"), payment_id_for("pi_123"));
        assert_ne!(payment_id_for("pi_123"), payment_id_for("pi_124"));
    }

    #[test]
    fn the_base_url_must_be_https_or_loopback_and_the_key_not_empty() {
        assert!(HttpGateway::new("https://api.provider.example", "sk_test_1").is_ok());
        assert!(HttpGateway::new("http://127.0.0.1:4242", "sk_test_1").is_ok());
        assert!(HttpGateway::new("http://api.provider.example", "sk_test_1").is_err());
        assert!(HttpGateway::new("https://api.provider.example", " ").is_err());
    }
}
