//! A small consumer for the runner's integration tests: it notes each `order.created` (its
//! customer email, in a text column) and passes the order on as one `stock.reserved`, so a
//! test can make the handler's own statement, the inbox or the outbox meet bad data.

#![allow(dead_code)]

use async_trait::async_trait;
use shared::contracts::{OrderCreated, OrderLine, Payload, StockReserved};
use shared::runner::{Applied, MessageHandler};
use shared::{Envelope, HandleError};
use sqlx::PgConnection;

pub const SCHEMA: &str = "wire_notes";
pub const NAME: &str = "wire-notes";
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations");

pub struct Notes;

#[async_trait]
impl MessageHandler for Notes {
    type Effect = ();

    fn name(&self) -> &'static str {
        NAME
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<()>, HandleError> {
        let Payload::OrderCreated(order) = env.payload() else {
            return Err(HandleError::unexpected(env));
        };
        sqlx::query("INSERT INTO wire_notes.notes (event_id, note) VALUES ($1, $2)")
            .bind(env.event_uuid())
            .bind(&order.customer_email)
            .execute(&mut *tx)
            .await?;
        Ok(Applied::events(vec![Envelope::new(
            Payload::StockReserved(StockReserved {
                order_id: order.order_id.clone(),
                items: order.items.clone(),
            }),
            Some(env),
        )]))
    }
}

pub fn created(order_id: &str, email: &str) -> Envelope {
    Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: order_id.into(),
            user_id: "u-1".into(),
            customer_email: email.into(),
            items: vec![OrderLine {
                product_id: "sku-1".into(),
                quantity: 1,
                unit_price_cents: 1000,
            }],
            total_cents: 1000,
            currency: "EUR".into(),
            payment_token_sealed: shared::payment_token::TokenKeys::development()
                .seal(order_id, "tok_visa"),
            payment_ref: shared::payment_token::reference("tok_visa"),
            ..Default::default()
        }),
        None,
    )
}

/// How many rows `table` of the test schema holds.
pub async fn count(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {SCHEMA}.{table}"
    )))
    .fetch_one(pool)
    .await
    .expect("count")
}
