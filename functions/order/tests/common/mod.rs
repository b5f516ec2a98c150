//! Shared harness for the order service's integration tests: a `TestEnv` with the order
//! schema migrated, the functions built on it, and helpers to call them like their triggers.
#![allow(dead_code, clippy::unwrap_used)]

use aws_lambda_events::http::{HeaderName, HeaderValue};
use serde_json::Value;
use shared::contracts::{
    Payload, PaymentProcessed, PaymentStatus, ProductUpdated, RejectReason, StockRejected,
    StockReserved,
};
use shared::session::Session;
use shared::testing::TestEnv;
use shared::{Encoding, Envelope, Function};
use std::sync::Arc;
use uuid::Uuid;

pub struct Harness {
    pub env: TestEnv,
    pub create: Arc<dyn Function>,
    pub get: Arc<dyn Function>,
    pub cancel: Arc<dyn Function>,
    pub admin: Arc<dyn Function>,
    pub saga: Arc<dyn Function>,
    pub catalog: Arc<dyn Function>,
    pub timeline: Arc<dyn Function>,
}

pub struct User {
    pub user_id: Uuid,
    pub email: String,
    pub token: String,
}

impl Harness {
    pub async fn new() -> Self {
        Self::from_env(TestEnv::new().await).await
    }

    pub async fn from_env(env: TestEnv) -> Self {
        env.migrate(order::SCHEMA, &order::MIGRATOR).await;
        Harness {
            create: order::functions::create(&env.ctx),
            get: order::functions::get(&env.ctx),
            cancel: order::functions::cancel(&env.ctx),
            admin: order::functions::admin(&env.ctx),
            saga: order::functions::saga(&env.ctx),
            catalog: order::functions::catalog(&env.ctx),
            timeline: order::functions::timeline(&env.ctx),
            env,
        }
    }

    /// A harness with a seeded catalog: sku-1 at 1999 EUR, sku-2 at 500 EUR, usd-1 at 100 USD.
    pub async fn seeded() -> Self {
        let h = Self::new().await;
        h.seed_catalog().await;
        h
    }

    pub async fn seed_catalog(&self) {
        let envs = [
            product("sku-1", 1999, "EUR", 1),
            product("sku-2", 500, "EUR", 1),
            product("usd-1", 100, "USD", 1),
        ];
        let report = self.deliver(&self.catalog, "order-catalog", &envs).await;
        assert_eq!(report["processed"], 3, "{report}");
    }

    pub async fn user(&self) -> User {
        self.user_with(shared::session::Role::Customer).await
    }

    /// A signed-in admin (for `/admin/*` routes).
    pub async fn admin(&self) -> User {
        self.user_with(shared::session::Role::Admin).await
    }

    pub async fn user_with(&self, role: shared::session::Role) -> User {
        let user_id = Uuid::new_v4();
        let email = format!("{}@example.com", user_id.simple());
        let (token, _) = self
            .env
            .ctx
            .sessions
            .create(&Session {
                user_id,
                email: email.clone(),
                role,
            })
            .await
            .expect("session in Redis");
        User {
            user_id,
            email,
            token,
        }
    }

    /// Delivers envelopes on a queue, as the trigger would; returns the batch report.
    pub async fn deliver(&self, f: &Arc<dyn Function>, queue: &str, envs: &[Envelope]) -> Value {
        let ev = self.env.rmq_event(queue, envs, Encoding::Protobuf);
        f.invoke(serde_json::to_value(&ev).unwrap())
            .await
            .expect("batch succeeds")
    }

    pub async fn to_saga(&self, envs: &[Envelope]) -> Value {
        self.deliver(&self.saga, "order-saga", envs).await
    }

    /// Delivers envelopes to `order-timeline`, as the `#` binding would.
    pub async fn to_timeline(&self, envs: &[Envelope]) -> Value {
        self.deliver(&self.timeline, "order-timeline", envs).await
    }

    pub async fn post_order(
        &self,
        token: Option<&str>,
        body: &str,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = shared::http::request("POST", "/orders", "POST /orders");
        req.body = Some(body.to_string());
        if let Some(token) = token {
            req.headers.insert(
                HeaderName::from_static("authorization"),
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
        }
        if let Some(key) = key {
            req.headers.insert(
                HeaderName::from_static("idempotency-key"),
                HeaderValue::from_str(key).unwrap(),
            );
        }
        call(&self.create, req).await
    }

    pub async fn get_order(&self, token: &str, id: &str) -> (u16, Value) {
        let mut req = shared::http::request("GET", &format!("/orders/{id}"), "GET /orders/{id}");
        req.path_parameters.insert("id".into(), id.to_string());
        req.headers.insert(
            HeaderName::from_static("authorization"),
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        call(&self.get, req).await
    }

    /// `POST /orders/{id}/cancel`, with a bearer token when given.
    pub async fn cancel_order(&self, token: Option<&str>, id: &str) -> (u16, Value) {
        let mut req = shared::http::request(
            "POST",
            &format!("/orders/{id}/cancel"),
            "POST /orders/{id}/cancel",
        );
        req.path_parameters.insert("id".into(), id.to_string());
        if let Some(token) = token {
            bearer(&mut req, token);
        }
        call(&self.cancel, req).await
    }

    /// `POST /admin/orders/{id}/<action>` (`ship`, `deliver`, `refunds`).
    pub async fn admin_post(
        &self,
        token: Option<&str>,
        action: &str,
        id: &str,
        body: Option<&str>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = shared::http::request(
            "POST",
            &format!("/admin/orders/{id}/{action}"),
            &format!("POST /admin/orders/{{id}}/{action}"),
        );
        req.path_parameters.insert("id".into(), id.to_string());
        req.body = body.map(str::to_string);
        if let Some(token) = token {
            bearer(&mut req, token);
        }
        if let Some(key) = key {
            req.headers.insert(
                HeaderName::from_static("idempotency-key"),
                HeaderValue::from_str(key).unwrap(),
            );
        }
        call(&self.admin, req).await
    }

    /// Places an order and lets the saga confirm it (stock reserved, payment approved).
    pub async fn confirmed(&self, user: &User) -> (Uuid, Envelope) {
        let (id, created) = self.place(user, "tok_visa").await;
        self.to_saga(&[reserved(&created), payment(&created, true)])
            .await;
        assert_eq!(self.order_row(id).await.status, "CONFIRMED");
        (id, created)
    }

    /// Events of `event_type` published for the order.
    pub fn published_of(&self, id: Uuid, event_type: &str) -> Vec<Envelope> {
        self.env
            .published()
            .into_iter()
            .filter(|e| e.correlation_id == id.to_string() && e.event_type == event_type)
            .collect()
    }

    /// Outbox rows of `event_type` for the order (published or not).
    pub async fn outbox_count(&self, id: Uuid, event_type: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM orders.outbox WHERE correlation_id = $1 AND event_type = $2",
        )
        .bind(id.to_string())
        .bind(event_type)
        .fetch_one(&self.env.ctx.pool)
        .await
        .unwrap()
    }

    /// Places a valid order and returns its id and the `order.created` published for it.
    pub async fn place(&self, user: &User, token: &str) -> (Uuid, Envelope) {
        let body = format!(
            r#"{{"items":[{{"product_id":"sku-1","quantity":2}}],"payment_token":"{token}"}}"#
        );
        let (status, answer) = self.post_order(Some(&user.token), &body, None).await;
        assert_eq!(status, 202, "{answer}");
        let id = Uuid::parse_str(answer["order_id"].as_str().unwrap()).unwrap();
        let created = self
            .env
            .published()
            .into_iter()
            .find(|e| e.event_type == "order.created" && e.correlation_id == id.to_string())
            .expect("order.created published");
        (id, created)
    }

    pub async fn order_row(&self, id: Uuid) -> order::OrderRow {
        order::orders(&self.env.ctx.pool)
            .await
            .unwrap()
            .into_iter()
            .find(|o| o.order_id == id)
            .expect("order row")
    }

    /// Published decisions (`order.confirmed` / `order.cancelled`) for an order.
    pub fn decisions(&self, id: Uuid) -> Vec<Envelope> {
        self.env
            .published()
            .into_iter()
            .filter(|e| e.correlation_id == id.to_string())
            .filter(|e| e.event_type == "order.confirmed" || e.event_type == "order.cancelled")
            .collect()
    }
}

pub fn bearer(req: &mut shared::http::Request, token: &str) {
    req.headers.insert(
        HeaderName::from_static("authorization"),
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
}

pub async fn call(f: &Arc<dyn Function>, req: shared::http::Request) -> (u16, Value) {
    let out = f
        .invoke(serde_json::to_value(&req).unwrap())
        .await
        .expect("http function answers");
    let status = out["statusCode"].as_u64().unwrap() as u16;
    let body = out["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).unwrap())
        .unwrap_or(Value::Null);
    (status, body)
}

pub fn product(id: &str, price_cents: i64, currency: &str, version: u64) -> Envelope {
    Envelope::new(
        Payload::ProductUpdated(ProductUpdated {
            product_id: id.into(),
            name: format!("Product {id}"),
            price_cents,
            currency: currency.into(),
            version,
            ..Default::default()
        }),
        None,
    )
}

pub fn reserved(created: &Envelope) -> Envelope {
    Envelope::new(
        Payload::StockReserved(StockReserved {
            order_id: created.correlation_id.clone(),
            items: vec![],
        }),
        Some(created),
    )
}

pub fn rejected(created: &Envelope) -> Envelope {
    Envelope::new(
        Payload::StockRejected(StockRejected {
            order_id: created.correlation_id.clone(),
            reason: RejectReason::OutOfStock as i32,
            product_id: "sku-1".into(),
        }),
        Some(created),
    )
}

pub fn payment(created: &Envelope, ok: bool) -> Envelope {
    Envelope::new(
        Payload::PaymentProcessed(PaymentProcessed {
            order_id: created.correlation_id.clone(),
            status: if ok {
                PaymentStatus::Success
            } else {
                PaymentStatus::Failed
            } as i32,
            payment_id: Uuid::new_v4().to_string(),
            amount_cents: 3998,
            currency: "EUR".into(),
            decline_code: if ok {
                String::new()
            } else {
                "card_declined".into()
            },
            last4: "4242".into(),
        }),
        Some(created),
    )
}
