//! The delivery port (`NotificationChannel`) and the default `LogChannel`.

use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

/// A committed notification, ready to deliver. Serialises as the webhook body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outgoing {
    pub notification_id: Uuid,
    pub order_id: String,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// How one delivery ended, after the channel's own retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered { attempts: u32 },
    Failed { attempts: u32, error: String },
}

impl Delivery {
    pub fn attempts(&self) -> u32 {
        match self {
            Delivery::Delivered { attempts } | Delivery::Failed { attempts, .. } => *attempts,
        }
    }
}

/// Where notifications go. Delivery is at least once (a crash after sending and before
/// recording repeats it), so receivers dedupe on `notification_id`.
#[async_trait]
pub trait NotificationChannel: Send + Sync {
    /// Stored in the `channel` column and the `notification.sent` event.
    fn name(&self) -> &'static str;

    /// Delivers one notification; never panics, reports failures as `Delivery::Failed`.
    async fn deliver(&self, notification: &Outgoing) -> Delivery;
}

/// The default channel: one structured log line per notification, by id. The recipient,
/// subject and text stay in `notifications.notifications`: logs are kept longer and read by
/// more people than that table, and carry no personal data.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogChannel;

#[async_trait]
impl NotificationChannel for LogChannel {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn deliver(&self, n: &Outgoing) -> Delivery {
        tracing::info!(
            notification_id = %n.notification_id,
            order_id = %n.order_id,
            kind = %n.kind,
            body_chars = n.body.chars().count(),
            "notification delivered"
        );
        Delivery::Delivered { attempts: 1 }
    }
}
