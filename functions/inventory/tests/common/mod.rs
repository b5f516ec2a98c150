//! Shared helpers of the inventory integration tests.
#![allow(dead_code)]

use inventory::ProductSeed;
use inventory::domain::StockFigure;
use shared::contracts::*;
use shared::runner::BatchReport;
use shared::testing::TestEnv;
use shared::{Encoding, Envelope, Function};
use std::sync::Arc;

pub struct Harness {
    pub env: TestEnv,
    pub reserve: Arc<dyn Function>,
    pub release: Arc<dyn Function>,
    pub products: Arc<dyn Function>,
}

impl Harness {
    pub async fn new() -> Self {
        Self::from_env(TestEnv::new().await).await
    }

    pub async fn from_env(env: TestEnv) -> Self {
        env.migrate(inventory::SCHEMA, &inventory::MIGRATOR).await;
        let reserve = inventory::functions::reserve(&env.ctx);
        let release = inventory::functions::release(&env.ctx);
        let products = inventory::functions::products(&env.ctx);
        Harness {
            env,
            reserve,
            release,
            products,
        }
    }

    pub async fn seed(&self, products: &[(&str, i32)]) {
        let seeds: Vec<ProductSeed> = products
            .iter()
            .map(|(id, stock)| ProductSeed {
                product_id: id.to_string(),
                name: format!("Product {id}"),
                price_cents: 1000,
                currency: "EUR".into(),
                stock: *stock,
            })
            .collect();
        inventory::upsert_products(&self.env.ctx, &seeds)
            .await
            .expect("seed");
        self.env.clear_published();
    }

    pub async fn deliver(
        &self,
        f: &Arc<dyn Function>,
        queue: &str,
        events: &[Envelope],
    ) -> BatchReport {
        let ev = self.env.rmq_event(queue, events, Encoding::Protobuf);
        let out = f
            .invoke(serde_json::to_value(&ev).expect("event json"))
            .await
            .expect("invocation succeeds");
        serde_json::from_value(out).expect("batch report")
    }

    pub async fn reserve(&self, events: &[Envelope]) -> BatchReport {
        self.deliver(&self.reserve, "inventory-reserve", events)
            .await
    }

    pub async fn release(&self, events: &[Envelope]) -> BatchReport {
        self.deliver(&self.release, "inventory-release", events)
            .await
    }

    pub async fn available(&self, id: &str) -> i64 {
        inventory::stock_levels(&self.env.ctx.pool)
            .await
            .expect("levels")
            .into_iter()
            .find(|l| l.product_id == id)
            .map(|l| l.available)
            .expect("product exists")
    }

    pub async fn status(&self, order_id: &str) -> Option<String> {
        inventory::reservations(&self.env.ctx.pool)
            .await
            .expect("reservations")
            .into_iter()
            .find(|(o, _)| o == order_id)
            .map(|(_, s)| s)
    }

    pub async fn cached(&self, id: &str) -> Option<StockFigure> {
        inventory::RedisStockCache::from_context(&self.env.ctx)
            .get_many(&[id.to_string()])
            .await
            .expect("redis")
            .pop()
            .flatten()
    }

    /// Calls `inventory-products` with a v2 request; returns status, x-stock-source, body.
    pub async fn get(
        &self,
        route_key: &str,
        path: &str,
        params: &[(&str, &str)],
        query: &[(&str, &str)],
    ) -> (i64, Option<String>, serde_json::Value) {
        let mut req = shared::http::request("GET", path, route_key);
        for (k, v) in params {
            req.path_parameters.insert(k.to_string(), v.to_string());
        }
        let q: std::collections::HashMap<String, String> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        req.query_string_parameters = q.into();
        let out = self
            .products
            .invoke(serde_json::to_value(&req).expect("request json"))
            .await
            .expect("invoke");
        let resp: shared::http::Response = serde_json::from_value(out).expect("response");
        let source = resp
            .headers
            .get("x-stock-source")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match resp.body {
            Some(aws_lambda_events::encodings::Body::Text(t)) => {
                serde_json::from_str(&t).expect("json body")
            }
            _ => serde_json::Value::Null,
        };
        (resp.status_code, source, body)
    }
}

pub fn created(order_id: &str, items: &[(&str, u32)]) -> Envelope {
    Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: order_id.into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            items: items
                .iter()
                .map(|(p, q)| OrderLine {
                    product_id: p.to_string(),
                    quantity: *q,
                    unit_price_cents: 1000,
                })
                .collect(),
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

pub fn cancelled(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderCancelled(OrderCancelled {
            order_id: order_id.into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            reason: CancelReason::PaymentDeclined as i32,
        }),
        None,
    )
}

pub fn rejections(published: &[Envelope]) -> Vec<StockRejected> {
    published
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::StockRejected(r)) => Some(r.clone()),
            _ => None,
        })
        .collect()
}
