//! `WebhookChannel`: POSTs each notification as JSON, with `Idempotency-Key`, retrying
//! transient failures (connect errors, timeouts, 5xx, 429) with exponential backoff.

use crate::channel::{Delivery, NotificationChannel, Outgoing};
use async_trait::async_trait;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_ATTEMPTS: u32 = 4;
/// Waits before attempts 2, 3 and 4 are 100, 200 and 400 ms.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

pub struct WebhookChannel {
    client: reqwest::Client,
    url: String,
}

/// What one attempt told us.
enum Attempt {
    Ok,
    Retry(String),
    GiveUp(String),
}

impl WebhookChannel {
    /// One client per execution environment (connection pool, TLS config).
    pub fn new(url: impl Into<String>) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(WebhookChannel {
            client,
            url: url.into(),
        })
    }

    async fn attempt(&self, n: &Outgoing) -> Attempt {
        let sent = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", n.notification_id.to_string())
            .json(n)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => Attempt::Ok,
            Ok(resp) => {
                let status = resp.status();
                let why = format!("webhook answered {status}");
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Attempt::Retry(why)
                } else {
                    Attempt::GiveUp(why)
                }
            }
            Err(e) if e.is_connect() || e.is_timeout() => {
                Attempt::Retry(format!("webhook unreachable: {e}"))
            }
            Err(e) => Attempt::GiveUp(format!("webhook request failed: {e}")),
        }
    }
}

#[async_trait]
impl NotificationChannel for WebhookChannel {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn deliver(&self, n: &Outgoing) -> Delivery {
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(n).await {
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
