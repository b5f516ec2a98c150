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
    pub admin: Arc<dyn Function>,
}

/// An HTTP answer: status, headers, JSON body (`Null` when there is none).
#[derive(Debug)]
pub struct Answer {
    pub status: i64,
    pub headers: aws_lambda_events::http::HeaderMap,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    pub fn etag(&self) -> Option<&str> {
        self.headers.get("etag").and_then(|v| v.to_str().ok())
    }
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
        let admin = inventory::functions::admin(&env.ctx);
        Harness {
            env,
            reserve,
            release,
            products,
            admin,
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

    /// A bearer token of a signed-in user with `role`.
    pub async fn token(&self, role: shared::session::Role) -> String {
        let user_id = uuid::Uuid::new_v4();
        let (token, _) = self
            .env
            .ctx
            .sessions
            .create(&shared::session::Session {
                user_id,
                email: format!("{}@example.com", user_id.simple()),
                role,
            })
            .await
            .expect("session in Redis");
        token
    }

    pub async fn admin_token(&self) -> String {
        self.token(shared::session::Role::Admin).await
    }

    /// Calls `inventory-admin`: `route_key` such as `PATCH /admin/products/{id}`, the
    /// product id for `{id}`, a bearer token, extra headers and a JSON body.
    pub async fn call_admin(
        &self,
        route_key: &str,
        id: Option<&str>,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: serde_json::Value,
    ) -> Answer {
        let (method, template) = route_key.split_once(' ').expect("route key");
        let path = template.replace("{id}", id.unwrap_or(""));
        let mut req = shared::http::request(method, &path, route_key);
        if let Some(id) = id {
            req.path_parameters.insert("id".into(), id.into());
        }
        if let Some(t) = token {
            req.headers.insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        for (k, v) in headers {
            req.headers.insert(
                aws_lambda_events::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("header value"),
            );
        }
        if !body.is_null() {
            req.body = Some(body.to_string());
        }
        let out = self
            .admin
            .invoke(serde_json::to_value(&req).expect("request json"))
            .await
            .expect("invoke");
        let resp: shared::http::Response = serde_json::from_value(out).expect("response");
        let body = match resp.body {
            Some(aws_lambda_events::encodings::Body::Text(t)) => {
                serde_json::from_str(&t).expect("json body")
            }
            _ => serde_json::Value::Null,
        };
        Answer {
            status: resp.status_code,
            headers: resp.headers,
            body,
        }
    }

    /// Creates a product through `POST /admin/products` (stock, threshold) and forgets the
    /// events it published.
    pub async fn admin_product(&self, id: &str, stock: i64, threshold: i64) -> Answer {
        let token = self.admin_token().await;
        let a = self
            .call_admin(
                "POST /admin/products",
                None,
                Some(&token),
                &[],
                serde_json::json!({"product_id": id, "name": format!("Product {id}"),
                    "price_cents": 1000, "currency": "EUR", "stock": stock,
                    "low_stock_threshold": threshold}),
            )
            .await;
        assert_eq!(a.status, 201, "{a:?}");
        self.env.clear_published();
        a
    }

    /// Every published event of one type, in order.
    pub fn published_of<T>(&self, pick: impl Fn(Payload) -> Option<T>) -> Vec<T> {
        self.env
            .published()
            .into_iter()
            .filter_map(|e| e.payload.and_then(&pick))
            .collect()
    }

    /// `(available, reserved)` of a product, from Postgres.
    pub async fn figures(&self, id: &str) -> (i64, i64) {
        let (a, r): (i32, i32) = sqlx::query_as(
            "SELECT available, reserved FROM inventory.products WHERE product_id = $1",
        )
        .bind(id)
        .fetch_one(&self.env.ctx.pool)
        .await
        .expect("product");
        (i64::from(a), i64::from(r))
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

pub fn shipped(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderShipped(OrderShipped {
            order_id: order_id.into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            carrier: "DHL".into(),
            tracking_number: "JD0001".into(),
            items: vec![],
        }),
        None,
    )
}

pub fn refund(order_id: &str, refund_id: &str, items: &[(&str, u32)], restock: bool) -> Envelope {
    Envelope::new(
        Payload::RefundRequested(RefundRequested {
            order_id: order_id.into(),
            refund_id: refund_id.into(),
            amount_cents: 1000,
            currency: "EUR".into(),
            items: items
                .iter()
                .map(|(p, q)| OrderLine {
                    product_id: p.to_string(),
                    quantity: *q,
                    unit_price_cents: 1000,
                })
                .collect(),
            restock,
            reason: "damaged".into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
        }),
        None,
    )
}

pub fn customer_cancelled(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderCancelled(OrderCancelled {
            order_id: order_id.into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            reason: CancelReason::CustomerCancelled as i32,
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
