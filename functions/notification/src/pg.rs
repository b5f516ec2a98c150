//! `PgNotifications`: the notifications table (one row per order, kind and `ref_id`: the
//! refund id of a refund, '' for a state).

use crate::channel::Outgoing;
use crate::domain::Draft;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Inserts the draft unless the order already has this notification (same kind and
/// `ref_id`); returns the
/// new notification, or `None` for a duplicate. Runs in the message's transaction.
pub async fn insert(
    conn: &mut PgConnection,
    draft: &Draft,
    channel: &str,
) -> sqlx::Result<Option<Outgoing>> {
    let notification_id = Uuid::now_v7();
    let done = sqlx::query(
        "INSERT INTO notifications.notifications
             (notification_id, order_id, kind, user_id, recipient, channel, subject, body, status,
              attempts, ref_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9)
         ON CONFLICT (order_id, kind, ref_id) DO NOTHING",
    )
    .bind(notification_id)
    .bind(&draft.order_id)
    .bind(draft.kind.as_str())
    .bind(&draft.user_id)
    .bind(&draft.recipient)
    .bind(channel)
    .bind(&draft.subject)
    .bind(&draft.body)
    .bind(&draft.ref_id)
    .execute(conn)
    .await?;
    Ok((done.rows_affected() == 1).then(|| Outgoing {
        notification_id,
        order_id: draft.order_id.clone(),
        kind: draft.kind.as_str().to_string(),
        recipient: draft.recipient.clone(),
        subject: draft.subject.clone(),
        body: draft.body.clone(),
    }))
}

/// `insert` for many drafts in one statement (the set-based path): the drafts that made a
/// new notification, each with its position in `drafts`. A draft whose order already has
/// that notification (kind and `ref_id`) (from an earlier chunk, or earlier in this one) makes none, as
/// one by one; `ON CONFLICT DO NOTHING` also skips a repeat within the statement, keeping
/// the first.
pub async fn insert_many(
    conn: &mut PgConnection,
    drafts: &[&Draft],
    channel: &str,
) -> sqlx::Result<Vec<(usize, Outgoing)>> {
    if drafts.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = drafts.iter().map(|_| Uuid::now_v7()).collect();
    let column = |f: fn(&Draft) -> &str| -> Vec<&str> { drafts.iter().map(|d| f(d)).collect() };
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO notifications.notifications
             (notification_id, order_id, kind, user_id, recipient, channel, subject, body, status,
              attempts, ref_id)
         SELECT d.id, d.order_id, d.kind, d.user_id, d.recipient, $6, d.subject, d.body, 'pending', 0,
                d.ref_id
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[], $8::text[],
                     $9::text[])
              WITH ORDINALITY AS d(id, order_id, kind, user_id, recipient, subject, body, ref_id, n)
         ORDER BY d.n
         ON CONFLICT (order_id, kind, ref_id) DO NOTHING
         RETURNING notification_id",
    )
    .bind(&ids)
    .bind(column(|d| &d.order_id))
    .bind(column(|d| d.kind.as_str()))
    .bind(column(|d| &d.user_id))
    .bind(column(|d| &d.recipient))
    .bind(channel)
    .bind(column(|d| &d.subject))
    .bind(column(|d| &d.body))
    .bind(column(|d| &d.ref_id))
    .fetch_all(conn)
    .await?;
    let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
    Ok(ids
        .iter()
        .zip(drafts)
        .enumerate()
        .filter(|(_, (id, _))| inserted.contains(id))
        .map(|(i, (id, d))| {
            (
                i,
                Outgoing {
                    notification_id: *id,
                    order_id: d.order_id.clone(),
                    kind: d.kind.as_str().to_string(),
                    recipient: d.recipient.clone(),
                    subject: d.subject.clone(),
                    body: d.body.clone(),
                },
            )
        })
        .collect())
}

/// Records delivered notifications with their attempt counts, in one statement.
pub async fn mark_delivered(pool: &PgPool, outcomes: &[(Uuid, i32)]) -> sqlx::Result<()> {
    mark(
        pool,
        outcomes,
        "UPDATE notifications.notifications AS n
         SET status = 'delivered', delivered_at = now(), attempts = u.attempts
         FROM UNNEST($1::uuid[], $2::int[]) AS u(id, attempts)
         WHERE n.notification_id = u.id",
    )
    .await
}

/// Records failed notifications with their attempt counts, in one statement.
pub async fn mark_failed(pool: &PgPool, outcomes: &[(Uuid, i32)]) -> sqlx::Result<()> {
    mark(
        pool,
        outcomes,
        "UPDATE notifications.notifications AS n
         SET status = 'failed', attempts = u.attempts
         FROM UNNEST($1::uuid[], $2::int[]) AS u(id, attempts)
         WHERE n.notification_id = u.id",
    )
    .await
}

/// Waits before each retry of a status update.
const MARK_BACKOFF_MS: [u64; 3] = [50, 200, 800];

/// Runs the status update, retried: it comes after the notifications were delivered and
/// their message acknowledged, so nothing would ever redo it, and a notification whose
/// update is lost stays `pending` although its customer got it. A connection that died under
/// it (a Postgres restart or failover, a terminated backend: the chaos suite's Postgres fault
/// once hit exactly here) is replaced by the pool on the next try; the update sets absolute
/// values, so running it twice is harmless.
async fn mark(pool: &PgPool, outcomes: &[(Uuid, i32)], sql: &'static str) -> sqlx::Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let (ids, attempts): (Vec<Uuid>, Vec<i32>) = outcomes.iter().copied().unzip();
    let mut backoff = MARK_BACKOFF_MS.iter();
    loop {
        let result = sqlx::query(sql)
            .bind(&ids)
            .bind(&attempts)
            .execute(pool)
            .await;
        match (result, backoff.next()) {
            (Ok(_), _) => return Ok(()),
            (Err(e), Some(ms)) => {
                tracing::warn!(error = %e, retry_in_ms = ms, count = ids.len(), "recording notification outcomes failed, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
            }
            (Err(e), None) => return Err(e),
        }
    }
}

/// `(order_id, kind, count)` for every order and kind with a notification.
pub async fn counts(pool: &PgPool) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(
        "SELECT order_id, kind, count(*) FROM notifications.notifications
         GROUP BY order_id, kind ORDER BY order_id, kind",
    )
    .fetch_all(pool)
    .await
}

/// Notifications of an order still waiting for delivery (a crash cut `after_commit` short).
pub async fn pending_for_order(pool: &PgPool, order_id: &str) -> sqlx::Result<Vec<Outgoing>> {
    let rows: Vec<(Uuid, String, String, String, String, String)> = sqlx::query_as(
        "SELECT notification_id, order_id, kind, recipient, subject, body
         FROM notifications.notifications WHERE order_id = $1 AND status = 'pending'",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(notification_id, order_id, kind, recipient, subject, body)| Outgoing {
                notification_id,
                order_id,
                kind,
                recipient,
                subject,
                body,
            },
        )
        .collect())
}

/// A notification as `orderflow verify` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    pub notification_id: Uuid,
    pub order_id: String,
    pub kind: String,
    /// The refund id of an order_refunded notification, '' otherwise.
    pub ref_id: String,
    pub status: String,
}

/// What `orderflow verify` reads of the notification service, in the caller's transaction:
/// every notification, and the `notification_id` of every `notification.sent` event in the
/// outbox (the independent record that a notification was produced, and how many times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationAudit {
    pub notifications: Vec<NotificationRow>,
    pub sent_events: Vec<String>,
}

pub async fn audit(conn: &mut PgConnection) -> anyhow::Result<NotificationAudit> {
    let rows: Vec<(Uuid, String, String, String, String)> = sqlx::query_as(
        "SELECT notification_id, order_id, kind, ref_id, status FROM notifications.notifications
         ORDER BY order_id, kind, ref_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let bodies: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT envelope FROM notifications.outbox WHERE event_type = 'notification.sent'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut sent_events = Vec::with_capacity(bodies.len());
    for body in bodies {
        let env = shared::Envelope::decode(&body, shared::envelope::Encoding::Protobuf)?;
        if let shared::contracts::Payload::NotificationSent(sent) = env.payload() {
            sent_events.push(sent.notification_id.clone());
        }
    }
    Ok(NotificationAudit {
        notifications: rows
            .into_iter()
            .map(
                |(notification_id, order_id, kind, ref_id, status)| NotificationRow {
                    notification_id,
                    order_id,
                    kind,
                    ref_id,
                    status,
                },
            )
            .collect(),
        sent_events,
    })
}
