//! `orders.timeline`: every event of an order seen on the bus, recorded by `order-timeline`.

use chrono::{DateTime, Utc};
use shared::Envelope;
use sqlx::{PgConnection, PgPool};

/// One recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub causation_id: String,
    pub traceparent: String,
    /// What the event said, in a few words (`domain::timeline::detail`).
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// Records `env` for its order; a redelivery changes nothing.
pub async fn record(conn: &mut PgConnection, env: &Envelope) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO orders.timeline
             (event_id, order_id, event_type, causation_id, traceparent, occurred_at, detail)
         VALUES ($1, $2, $3, $4, $5, to_timestamp($6::float8 / 1000), $7)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(env.event_uuid())
    .bind(&env.correlation_id)
    .bind(&env.event_type)
    .bind(&env.causation_id)
    .bind(&env.traceparent)
    .bind(env.occurred_at_ms as f64)
    .bind(crate::domain::timeline::detail(env.payload()))
    .execute(conn)
    .await?;
    Ok(())
}

/// `record` for many events in one statement (the timeline's set-based path).
pub async fn record_many(conn: &mut PgConnection, events: &[&Envelope]) -> sqlx::Result<()> {
    let events: Vec<&&Envelope> = events
        .iter()
        .filter(|e| !e.correlation_id.is_empty())
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_uuid()).collect();
    let orders: Vec<&str> = events.iter().map(|e| e.correlation_id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let causes: Vec<&str> = events.iter().map(|e| e.causation_id.as_str()).collect();
    let traces: Vec<&str> = events.iter().map(|e| e.traceparent.as_str()).collect();
    let occurred: Vec<f64> = events.iter().map(|e| e.occurred_at_ms as f64).collect();
    let details: Vec<String> = events
        .iter()
        .map(|e| crate::domain::timeline::detail(e.payload()))
        .collect();
    sqlx::query(
        "INSERT INTO orders.timeline
             (event_id, order_id, event_type, causation_id, traceparent, occurred_at, detail)
         SELECT id, o, t, c, tp, to_timestamp(ms / 1000), d
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::text[])
              AS u(id, o, t, c, tp, ms, d)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(ids)
    .bind(orders)
    .bind(types)
    .bind(causes)
    .bind(traces)
    .bind(occurred)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every recorded event of the order, by time (callers put them in causal order).
pub async fn for_order(pool: &PgPool, order_id: &str) -> sqlx::Result<Vec<TimelineRow>> {
    type Row = (
        uuid::Uuid,
        String,
        String,
        String,
        String,
        DateTime<Utc>,
        DateTime<Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT event_id, event_type, causation_id, traceparent, detail, occurred_at, recorded_at
         FROM orders.timeline WHERE order_id = $1 ORDER BY occurred_at, event_id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                event_id,
                event_type,
                causation_id,
                traceparent,
                detail,
                occurred_at,
                recorded_at,
            )| {
                TimelineRow {
                    event_id,
                    event_type,
                    causation_id,
                    traceparent,
                    detail,
                    occurred_at,
                    recorded_at,
                }
            },
        )
        .collect())
}
