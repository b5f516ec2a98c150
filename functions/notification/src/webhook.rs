//! `WebhookChannel`: POSTs each notification as JSON, signed the Standard Webhooks way,
//! retrying transient failures (connect errors, timeouts, 5xx, 429) with exponential backoff.
//!
//! Every request carries `webhook-id` (the notification id, the same on every attempt, so
//! the receiver dedupes on it; `Idempotency-Key` repeats it for older receivers),
//! `webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed with the decoded
//! `NOTIFICATION_WEBHOOK_SECRET` (`whsec_<base64>`). A receiver recomputes the HMAC over
//! the raw body it got, compares in constant time, and refuses timestamps more than a few
//! minutes off (replays).
//!
//! What the channel refuses to do: plain `http` except to a loopback host (the body carries
//! the customer's address), following redirects (a 3xx is a failed attempt: a redirect
//! could send a signed body elsewhere), and waiting forever (bounded connect and total
//! timeouts). Its log lines name the notification, never the URL (it may hold credentials)
//! nor the recipient or text.

use crate::channel::{Delivery, NotificationChannel, Outgoing};
use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use std::time::Duration;

/// Longest wait for a connection to the receiver.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one whole attempt.
pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_ATTEMPTS: u32 = 4;
/// Waits before attempts 2, 3 and 4 are 100, 200 and 400 ms.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Why the channel could not be built; messages never echo the secret or the URL's password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("NOTIFICATION_WEBHOOK_URL is not a URL")]
    Url,
    #[error(
        "NOTIFICATION_WEBHOOK_URL must use https (plain http is allowed to a loopback host \
         only), got {0}"
    )]
    Insecure(String),
    #[error(
        "NOTIFICATION_WEBHOOK_SECRET is required with NOTIFICATION_WEBHOOK_URL: deliveries \
         are signed (Standard Webhooks)"
    )]
    NoSecret,
    #[error(
        "NOTIFICATION_WEBHOOK_SECRET_ARN is set but was not read: the Lambda binaries read \
         it at init (shared::secrets); elsewhere set NOTIFICATION_WEBHOOK_SECRET"
    )]
    SecretArnOnly,
    #[error("NOTIFICATION_WEBHOOK_SECRET must be whsec_ followed by base64 of 24 to 64 bytes")]
    BadSecret,
    #[error("the webhook HTTP client could not be built: {0}")]
    Client(String),
}

/// The signing key: the decoded bytes of `whsec_<base64>`. `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// `whsec_<base64>` (the prefix is optional) of 24 to 64 bytes.
    pub fn parse(value: &str) -> Result<Self, WebhookConfigError> {
        let encoded = value.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| WebhookConfigError::BadSecret)?;
        if !(24..=64).contains(&key.len()) {
            return Err(WebhookConfigError::BadSecret);
        }
        Ok(WebhookSecret(key))
    }
}

/// The `webhook-signature` value of one attempt: `v1,<base64 HMAC-SHA256>`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
        // HMAC takes keys of any length; this branch is never taken.
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

/// `url` if it may carry notifications: https, or http to a loopback host.
pub fn check_url(url: &str) -> Result<reqwest::Url, WebhookConfigError> {
    shared::config::outbound_url(url).map_err(|e| match e {
        shared::config::OutboundUrlError::NotAUrl => WebhookConfigError::Url,
        shared::config::OutboundUrlError::Insecure(shown) => WebhookConfigError::Insecure(shown),
    })
}

pub struct WebhookChannel {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: WebhookSecret,
}

/// What one attempt told us.
enum Attempt {
    Ok,
    Retry(String),
    GiveUp(String),
}

impl WebhookChannel {
    /// One client per execution environment (connection pool, TLS config).
    pub fn new(url: &str, secret: &str) -> Result<Self, WebhookConfigError> {
        let url = check_url(url)?;
        let secret = WebhookSecret::parse(secret)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| WebhookConfigError::Client(e.without_url().to_string()))?;
        Ok(WebhookChannel {
            client,
            url,
            secret,
        })
    }

    async fn attempt(&self, id: &str, body: &[u8]) -> Attempt {
        let timestamp = chrono::Utc::now().timestamp();
        let sent = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(&self.secret, id, timestamp, body))
            .header("Idempotency-Key", id)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => Attempt::Ok,
            Ok(resp) if resp.status().is_redirection() => Attempt::GiveUp(format!(
                "webhook answered {} (redirects are not followed)",
                resp.status()
            )),
            Ok(resp) => {
                let status = resp.status();
                let why = format!("webhook answered {status}");
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Attempt::Retry(why)
                } else {
                    Attempt::GiveUp(why)
                }
            }
            // `without_url`: the URL may carry credentials, and errors end up in logs.
            Err(e) if e.is_connect() || e.is_timeout() => {
                Attempt::Retry(format!("webhook unreachable: {}", e.without_url()))
            }
            Err(e) => Attempt::GiveUp(format!("webhook request failed: {}", e.without_url())),
        }
    }
}

#[async_trait]
impl NotificationChannel for WebhookChannel {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn deliver(&self, n: &Outgoing) -> Delivery {
        // One body and one id for every attempt: the signature covers these exact bytes.
        let body = match serde_json::to_vec(n) {
            Ok(body) => body,
            Err(e) => {
                return Delivery::Failed {
                    attempts: 0,
                    error: format!("notification not serialisable: {e}"),
                };
            }
        };
        let id = n.notification_id.to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(&id, &body).await {
                Attempt::Ok => return Delivery::Delivered { attempts },
                Attempt::GiveUp(error) => return Delivery::Failed { attempts, error },
                Attempt::Retry(error) if attempts >= MAX_ATTEMPTS => {
                    return Delivery::Failed { attempts, error };
                }
                Attempt::Retry(error) => {
                    tracing::info!(notification_id = %n.notification_id, attempts, %error, "webhook delivery will be retried");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (and of svix's libraries).
        let secret = WebhookSecret::parse(SECRET).expect("secret");
        let signature = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn only_https_or_loopback_http_urls_are_accepted() {
        for ok in [
            "https://hooks.example.com/orderflow",
            "http://127.0.0.1:8080/hook",
            "http://[::1]:8080/hook",
            "http://localhost/hook",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        let err = check_url("http://user:hunter2@hooks.example.com/hook").expect_err("plain");
        let shown = err.to_string();
        assert!(
            shown.contains("https") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(check_url("not a url"), Err(WebhookConfigError::Url));
        assert!(check_url("ftp://127.0.0.1/hook").is_err());
    }

    #[test]
    fn a_secret_is_whsec_base64_of_24_to_64_bytes_and_never_shown() {
        assert!(WebhookSecret::parse(SECRET).is_ok());
        assert!(WebhookSecret::parse(SECRET.trim_start_matches("whsec_")).is_ok());
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ=").map(|_| ()),
            Err(WebhookConfigError::BadSecret)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64").map(|_| ()),
            Err(WebhookConfigError::BadSecret)
        );
        let secret = WebhookSecret::parse(SECRET).expect("secret");
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
        assert!(WebhookChannel::new("http://example.com/hook", SECRET).is_err());
        assert!(WebhookChannel::new("https://example.com/hook", SECRET).is_ok());
    }
}
