//! Stand-ins for the functions the bench drives: `order-create` and every queue function.
//! They run behind the real front door, bridge and batch runner (inbox, savepoint per
//! message, outbox, publish with confirms, mark published), write to the same inbox and
//! outbox tables, and publish the events the real handlers publish (`model::reaction`), but
//! decide nothing: no stock, no payment, no notification, no Redis, no row locks.
//!
//! Where a real function talks to Postgres outside the batch transaction, its stand-in makes
//! one trivial round trip in the same place, so that both runs commit the same number of
//! transactions per order: `order-create` looks its idempotency key up and reads the
//! products before its transaction (as the real one reads prices), and `notification-send`
//! records its deliveries once per batch after the commit. Inside the batch transaction the
//! stand-ins write nothing, except the saga's one counter update per result (it must know
//! when an order has both).

use super::model::{self, Outcome};
use async_trait::async_trait;
use shared::context::Context;
use shared::contracts::{
    CancelReason, NotificationKind, NotificationSent, OrderCancelled, OrderConfirmed, OrderCreated,
    OrderLine, Payload, PaymentCaptured, PaymentProcessed, PaymentStatus, StockReleased,
    StockReserved, keys,
};
use shared::http::{ApiError, Request, Response, header, json_body, json_response};
use shared::runner::{Applied, MessageHandler};
use shared::{Constructor, Envelope, Function, HandleError};
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use uuid::Uuid;

/// The approving test token; any other declines, as the simulated gateway does for the
/// tokens the bench sends.
const APPROVED: &str = "tok_visa";

/// The function for `binary` in a baseline runner: a stand-in where there is one, the real
/// function otherwise (relays, schedules and the routes the bench never calls).
pub fn find(binary: &str) -> Option<Constructor> {
    let stand_in: Constructor = match binary {
        "order-create" => create,
        "inventory-reserve" => reserve,
        "inventory-release" => release,
        "payment-process" => process,
        "payment-settle" => settle,
        "notification-send" => notify,
        "order-saga" => saga,
        "order-timeline" => timeline,
        "order-catalog" => catalog,
        _ => return crate::registry::find(binary),
    };
    Some(stand_in)
}

fn queue_fn(ctx: &Context, function: &'static str, schema: &'static str) -> Arc<dyn Function> {
    Arc::new(shared::lambda::RmqFunction(ctx.batch_runner(StandIn {
        function,
        schema,
        pool: ctx.pool.clone(),
    })))
}

fn reserve(ctx: &Context) -> Arc<dyn Function> {
    queue_fn(ctx, "inventory-reserve", inventory::SCHEMA)
}
fn release(ctx: &Context) -> Arc<dyn Function> {
    queue_fn(ctx, "inventory-release", inventory::SCHEMA)
}
fn process(ctx: &Context) -> Arc<dyn Function> {
    queue_fn(ctx, "payment-process", payment::SCHEMA)
}
fn settle(ctx: &Context) -> Arc<dyn Function> {
    queue_fn(ctx, "payment-settle", payment::SCHEMA)
}
fn notify(ctx: &Context) -> Arc<dyn Function> {
    queue_fn(ctx, "notification-send", notification::SCHEMA)
}
fn saga(ctx: &Context) -> Arc<dyn Function> {
    queue_fn(ctx, "order-saga", order::SCHEMA)
}
fn timeline(ctx: &Context) -> Arc<dyn Function> {
    queue_fn(ctx, "order-timeline", order::SCHEMA)
}
fn catalog(ctx: &Context) -> Arc<dyn Function> {
    queue_fn(ctx, "order-catalog", order::SCHEMA)
}

/// Which way an order goes, as far as this event tells.
fn outcome_of(env: &Envelope) -> Outcome {
    match env.payload() {
        Payload::OrderCreated(o) if o.payment_token != APPROVED => Outcome::Declined,
        Payload::OrderCancelled(_) => Outcome::Declined,
        _ => Outcome::Confirmed,
    }
}

/// The events a stand-in publishes for `env`, the saga excepted: what the model says, with
/// the least content that keeps them valid contracts.
pub fn react(function: &str, env: &Envelope) -> Vec<Envelope> {
    let outcome = outcome_of(env);
    let order_id = env.correlation_id.clone();
    let items = match env.payload() {
        Payload::OrderCreated(o) => o.items.clone(),
        _ => Vec::new(),
    };
    model::reaction(function, &env.event_type, outcome)
        .iter()
        .filter_map(|key| {
            let payload = match *key {
                keys::STOCK_RESERVED => Payload::StockReserved(StockReserved {
                    order_id: order_id.clone(),
                    items: items.clone(),
                }),
                keys::PAYMENT_PROCESSED => Payload::PaymentProcessed(PaymentProcessed {
                    order_id: order_id.clone(),
                    status: match outcome {
                        Outcome::Confirmed => PaymentStatus::Success,
                        Outcome::Declined => PaymentStatus::Failed,
                    } as i32,
                    ..Default::default()
                }),
                keys::NOTIFICATION_SENT => Payload::NotificationSent(NotificationSent {
                    order_id: order_id.clone(),
                    kind: match env.event_type.as_str() {
                        keys::ORDER_CREATED => NotificationKind::OrderReceived,
                        keys::ORDER_CONFIRMED => NotificationKind::OrderConfirmed,
                        _ => NotificationKind::OrderCancelled,
                    } as i32,
                    channel: "baseline".into(),
                    notification_id: Uuid::now_v7().to_string(),
                }),
                keys::PAYMENT_CAPTURED => Payload::PaymentCaptured(PaymentCaptured {
                    order_id: order_id.clone(),
                    ..Default::default()
                }),
                keys::STOCK_RELEASED => Payload::StockReleased(StockReleased {
                    order_id: order_id.clone(),
                    items: Vec::new(),
                }),
                _ => return None,
            };
            Some(Envelope::new(payload, Some(env)))
        })
        .collect()
}

struct StandIn {
    function: &'static str,
    schema: &'static str,
    pool: PgPool,
}

#[async_trait]
impl MessageHandler for StandIn {
    /// Orders notified, recorded after the commit as `notification-send` records deliveries.
    type Effect = Uuid;

    fn name(&self) -> &'static str {
        self.function
    }

    fn schema(&self) -> &'static str {
        self.schema
    }

    /// The timeline appends a chunk at once in the flow, so its stand-in does too.
    fn applies_in_bulk(&self) -> bool {
        self.function == order::functions::TIMELINE
    }

    async fn apply_chunk(
        &self,
        _tx: &mut PgConnection,
        _events: &[&Envelope],
    ) -> Result<Applied<Uuid>, HandleError> {
        Ok(Applied::nothing())
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<Uuid>, HandleError> {
        if self.function == "order-saga" {
            return saga_step(tx, env).await;
        }
        let mut applied = Applied::events(react(self.function, env));
        if self.function == "notification-send"
            && let Ok(id) = Uuid::parse_str(&env.correlation_id)
        {
            applied = applied.with_effect(id);
        }
        Ok(applied)
    }

    async fn after_commit(&self, orders: Vec<Uuid>) {
        if orders.is_empty() {
            return;
        }
        // A table of its own, as the real function's: updating the orders' rows would wait
        // on the saga's row locks, a contention the flow does not have.
        let done =
            sqlx::query("INSERT INTO baseline.notifications (order_id) SELECT unnest($1::uuid[])")
                .bind(&orders)
                .execute(&self.pool)
                .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "baseline: could not record notifications");
        }
    }
}

/// Counts the order's results in one statement; the second one decides.
async fn saga_step(tx: &mut PgConnection, env: &Envelope) -> Result<Applied<Uuid>, HandleError> {
    let failed = match env.payload() {
        Payload::PaymentProcessed(p) => p.status != PaymentStatus::Success as i32,
        Payload::StockReserved(_) => false,
        _ => return Err(HandleError::unexpected(env)),
    };
    let order_id = Uuid::parse_str(&env.correlation_id)
        .map_err(|_| HandleError::permanent("invalid order id"))?;
    let row: Option<(i32, bool, i64, String)> = sqlx::query_as(
        "UPDATE baseline.orders
         SET results = results + 1, declined = declined OR $2,
             finalized_at = CASE WHEN results + 1 = $3 THEN now() ELSE finalized_at END
         WHERE order_id = $1 RETURNING results, declined, total_cents, currency",
    )
    .bind(order_id)
    .bind(failed)
    .bind(model::SAGA_INPUTS.len() as i32)
    .fetch_optional(&mut *tx)
    .await?;
    let (results, declined, total_cents, currency) =
        row.ok_or_else(|| HandleError::permanent("unknown order"))?;
    if results as usize != model::SAGA_INPUTS.len() {
        return Ok(Applied::nothing());
    }
    let order_id = order_id.to_string();
    let payload = if declined {
        Payload::OrderCancelled(OrderCancelled {
            order_id,
            reason: CancelReason::PaymentDeclined as i32,
            ..Default::default()
        })
    } else {
        Payload::OrderConfirmed(OrderConfirmed {
            order_id,
            total_cents,
            currency,
            ..Default::default()
        })
    };
    Ok(Applied::events(vec![Envelope::new(payload, Some(env))]))
}

#[derive(serde::Deserialize)]
struct Line {
    product_id: String,
    quantity: u32,
}

#[derive(serde::Deserialize)]
struct Body {
    items: Vec<Line>,
    payment_token: String,
}

/// `POST /orders`: the real route's round trips (key lookup, product read, one transaction
/// with the order row and its outbox row, publish, mark published), no session, no pricing
/// rules, no validation beyond the JSON shape.
fn create(ctx: &Context) -> Arc<dyn Function> {
    let ctx = ctx.clone();
    Arc::new(shared::lambda::HttpFunction(move |req| {
        let ctx = ctx.clone();
        async move { create_order(&ctx, req).await }
    }))
}

async fn create_order(ctx: &Context, req: Request) -> Result<Response, ApiError> {
    let body: Body = json_body(&req)?;
    let key = header(&req, "idempotency-key").map(str::to_string);
    let answer = |id: Uuid| {
        json_response(
            202,
            &serde_json::json!({"order_id": id, "status": "PENDING"}),
        )
    };
    let find = async |key: &str| -> Result<Option<Uuid>, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT order_id FROM baseline.orders WHERE idem_key = $1")
                .bind(key)
                .fetch_optional(&ctx.pool)
                .await?,
        )
    };
    if let Some(k) = &key
        && let Some(id) = find(k).await?
    {
        return Ok(answer(id));
    }
    let ids: Vec<&str> = body.items.iter().map(|l| l.product_id.as_str()).collect();
    let prices: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT product_id, price_cents, currency FROM baseline.products WHERE product_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&ctx.pool)
    .await?;
    let items: Vec<OrderLine> = body
        .items
        .iter()
        .map(|l| OrderLine {
            product_id: l.product_id.clone(),
            quantity: l.quantity,
            unit_price_cents: prices
                .iter()
                .find(|p| p.0 == l.product_id)
                .map_or(0, |p| p.1),
        })
        .collect();
    let total_cents: i64 = items
        .iter()
        .map(|l| l.unit_price_cents * i64::from(l.quantity))
        .sum();
    let currency = prices.first().map_or_else(|| "EUR".into(), |p| p.2.clone());
    let order_id = Uuid::now_v7();
    let created = Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: order_id.to_string(),
            items,
            total_cents,
            currency: currency.clone(),
            payment_token: body.payment_token,
            ..Default::default()
        }),
        None,
    );
    let events = vec![created];
    let mut tx = ctx.pool.begin().await?;
    let claimed = sqlx::query(
        "INSERT INTO baseline.orders (order_id, idem_key, total_cents, currency)
         VALUES ($1, $2, $3, $4) ON CONFLICT (idem_key) DO NOTHING",
    )
    .bind(order_id)
    .bind(&key)
    .bind(total_cents)
    .bind(&currency)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 0 {
        // A concurrent retry with the same key won: answer with its order.
        tx.rollback().await?;
        let id = match &key {
            Some(k) => find(k).await?,
            None => None,
        };
        return id
            .map(answer)
            .ok_or_else(|| ApiError::new(409, "conflict", "retry"));
    }
    shared::db::outbox_insert(&mut tx, order::SCHEMA, &events).await?;
    tx.commit().await?;
    ctx.publish_committed(order::SCHEMA, &events).await;
    Ok(answer(order_id))
}

/// The baseline's own tables, beside the services' (whose inboxes and outboxes it uses).
pub async fn prepare(pool: &PgPool, catalog: &[inventory::ProductSeed]) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS baseline;
         CREATE TABLE IF NOT EXISTS baseline.products (
             product_id text PRIMARY KEY, price_cents bigint NOT NULL, currency text NOT NULL);
         CREATE TABLE IF NOT EXISTS baseline.orders (
             order_id     uuid PRIMARY KEY,
             idem_key     text UNIQUE,
             total_cents  bigint NOT NULL,
             currency     text NOT NULL,
             results      int NOT NULL DEFAULT 0,
             declined     boolean NOT NULL DEFAULT false,
             created_at   timestamptz NOT NULL DEFAULT now(),
             finalized_at timestamptz);
         CREATE TABLE IF NOT EXISTS baseline.notifications (
             order_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now());",
    )
    .execute(pool)
    .await?;
    for p in catalog {
        sqlx::query(
            "INSERT INTO baseline.products VALUES ($1, $2, $3)
             ON CONFLICT (product_id) DO UPDATE SET price_cents = excluded.price_cents",
        )
        .bind(&p.product_id)
        .bind(p.price_cents)
        .bind(&p.currency)
        .execute(pool)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(token: &str) -> Envelope {
        Envelope::new(
            Payload::OrderCreated(OrderCreated {
                order_id: Uuid::now_v7().to_string(),
                payment_token: token.into(),
                ..Default::default()
            }),
            None,
        )
    }

    fn decided(outcome: Outcome) -> Envelope {
        let order_id = Uuid::now_v7().to_string();
        Envelope::new(
            match outcome {
                Outcome::Confirmed => Payload::OrderConfirmed(OrderConfirmed {
                    order_id,
                    ..Default::default()
                }),
                Outcome::Declined => Payload::OrderCancelled(OrderCancelled {
                    order_id,
                    ..Default::default()
                }),
            },
            None,
        )
    }

    #[test]
    fn every_stand_in_publishes_what_the_model_says() {
        let functions = [
            "inventory-reserve",
            "inventory-release",
            "payment-process",
            "payment-settle",
            "notification-send",
            "order-timeline",
            "order-catalog",
        ];
        let inputs = [
            (created(APPROVED), Outcome::Confirmed),
            (created("tok_chargeDeclined"), Outcome::Declined),
            (decided(Outcome::Confirmed), Outcome::Confirmed),
            (decided(Outcome::Declined), Outcome::Declined),
        ];
        for f in functions {
            for (env, outcome) in &inputs {
                let got: Vec<String> = react(f, env).into_iter().map(|e| e.event_type).collect();
                let want: Vec<String> = model::reaction(f, &env.event_type, *outcome)
                    .iter()
                    .map(|k| k.to_string())
                    .collect();
                assert_eq!(got, want, "{f} on {}", env.event_type);
            }
        }
    }

    #[test]
    fn a_declined_card_makes_a_failed_payment_of_the_same_order() {
        let env = created("tok_chargeDeclined");
        let out = react("payment-process", &env);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].correlation_id, env.correlation_id);
        assert_eq!(out[0].causation_id, env.event_id);
        assert!(
            matches!(out[0].payload(), Payload::PaymentProcessed(p) if p.status == PaymentStatus::Failed as i32)
        );
    }

    #[test]
    fn stand_ins_replace_the_business_functions_only() {
        assert!(find("order-create").is_some());
        assert!(find("order-relay").is_some());
        assert!(find("no-such-function").is_none());
    }
}
