//! Shared harness: the whole stack in-process on the real local servers, isolated by a
//! fresh database and a random prefix for queues and Redis keys.

#![allow(dead_code)]

use local::stack::{Stack, StackOptions};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub struct App {
    pub stack: Stack,
    pub base: String,
    pub http: reqwest::Client,
    pub queues: Vec<String>,
    /// The template the stack runs (the built-in one unless a test gave another).
    pub template: String,
}

pub fn config(database_url: &str, prefix: &str) -> shared::Config {
    config_with(database_url, prefix, &[])
}

/// Same, with some variables set as the test wants them.
pub fn config_with(database_url: &str, prefix: &str, vars: &[(&str, &str)]) -> shared::Config {
    shared::Config::from_lookup(|k| {
        if let Some((_, v)) = vars.iter().find(|(name, _)| *name == k) {
            return Some(v.to_string());
        }
        match k {
            "DATABASE_URL" => Some(database_url.to_string()),
            "ORDERFLOW_PREFIX" => Some(prefix.to_string()),
            "DB_POOL_SIZE" => Some("16".into()),
            // Limits stay on, as in production, but high enough for tests that register
            // many users from 127.0.0.1 or place many orders as one user; the security
            // tests set their own.
            "ORDERFLOW_RATE_LIMIT_SIGNUP_PER_ADDRESS" => Some("1000/1h".into()),
            "ORDERFLOW_RATE_LIMIT_ORDERS_PER_USER" => Some("1000/1m".into()),
            _ => std::env::var(k).ok(),
        }
    })
    .expect("config")
}

pub async fn start() -> App {
    let db = shared::testing::fresh_database().await;
    start_with(config(&db, &shared::testing::random_prefix())).await
}

pub async fn start_with(cfg: shared::Config) -> App {
    start_with_limits(cfg, local::front::Limits::default()).await
}

/// Same, with the front door's timeouts and body limit as the test wants them.
pub async fn start_with_limits(cfg: shared::Config, http_limits: local::front::Limits) -> App {
    start_full(cfg, http_limits, local::template::EMBEDDED).await
}

/// Same, running the given template (e.g. one with shards).
pub async fn start_with_template(cfg: shared::Config, template: &str) -> App {
    start_full(cfg, local::front::Limits::default(), template).await
}

/// Same, with CORS on for these origins (`ORDERFLOW_CORS_ORIGINS`).
pub async fn start_with_cors(cfg: shared::Config, origins: &str) -> App {
    let cors = local::cors::Cors::parse(origins).expect("origins");
    start_opts(
        cfg,
        local::front::Limits::default(),
        local::template::EMBEDDED,
        cors,
    )
    .await
}

async fn start_full(cfg: shared::Config, http_limits: local::front::Limits, template: &str) -> App {
    start_opts(cfg, http_limits, template, local::cors::Cors::default()).await
}

async fn start_opts(
    cfg: shared::Config,
    http_limits: local::front::Limits,
    template: &str,
    cors: local::cors::Cors,
) -> App {
    shared::telemetry::init();
    let opts = StackOptions {
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: Some("127.0.0.1:0".parse().expect("addr")),
        http_limits,
        invoke_url: None,
        template: template.to_string(),
        schedule_every: Some(Duration::from_millis(500)),
        cors,
    };
    let specs = local::template::parse(&opts.template).expect("template");
    let stack = Stack::start(cfg, opts).await.expect("stack starts");
    let base = format!("http://{}", stack.http_addr);
    App {
        stack,
        base,
        http: reqwest::Client::new(),
        queues: local::template_queues(&specs),
        template: template.to_string(),
    }
}

impl App {
    pub async fn seed(&self, products: &[(&str, i64, i32)]) {
        let seeds: Vec<inventory::ProductSeed> = products
            .iter()
            .map(|(id, price, stock)| inventory::ProductSeed {
                product_id: id.to_string(),
                name: format!("Product {id}"),
                price_cents: *price,
                currency: "EUR".into(),
                stock: *stock,
            })
            .collect();
        local::seed::seed(&self.stack.ctx, &seeds, Some(Duration::from_secs(20)))
            .await
            .expect("seed");
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("HTTP");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("HTTP");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Registers and logs in a new user; returns the bearer token.
    pub async fn user(&self) -> String {
        let creds = json!({"email": format!("u{}@example.com", uuid::Uuid::new_v4().simple()), "password": "correct horse battery"});
        let (s, _) = self.send("POST", "/users", None, Some(creds.clone())).await;
        assert_eq!(s, 201);
        let (s, body) = self.send("POST", "/sessions", None, Some(creds)).await;
        assert_eq!(s, 201, "{body}");
        body["token"].as_str().expect("token").to_string()
    }

    pub async fn order(&self, token: &str, items: Value, payment_token: &str) -> String {
        let (s, body) = self
            .send(
                "POST",
                "/orders",
                Some(token),
                Some(json!({"items": items, "payment_token": payment_token})),
            )
            .await;
        assert_eq!(s, 202, "{body}");
        body["order_id"].as_str().expect("order_id").to_string()
    }

    /// Polls the order until it is final (a condition, not a fixed sleep).
    pub async fn final_state(&self, token: &str, order_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, body) = self
                .send("GET", &format!("/orders/{order_id}"), Some(token), None)
                .await;
            assert_eq!(s, 200, "{body}");
            if body["status"] != "PENDING" {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "order {order_id} still PENDING after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Graceful stop, then the test's queues and exchanges are removed from the broker.
    pub async fn stop(self) {
        let cfg = (*self.stack.ctx.config).clone();
        self.stack.stop().await;
        let specs = local::template::parse(&self.template).expect("template");
        local::stack::delete_topology(&cfg, &specs)
            .await
            .expect("delete topology");
    }

    pub async fn quiet(&self) {
        local::demo::wait_quiet(&self.stack, &self.queues, Duration::from_secs(30))
            .await
            .expect("quiet");
    }

    /// Every invariant check; panics listing the violations.
    pub async fn verify(&self) {
        self.verify_with(local::verify::Expect::default()).await
    }

    /// Same, for a test that sent invalid input on purpose (or expects something else).
    pub async fn verify_with(&self, expect: local::verify::Expect) {
        self.quiet().await;
        let checks = local::verify::run(&self.stack.ctx, &self.queues, &expect)
            .await
            .expect("verify runs");
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok())
            .map(|c| c.line())
            .collect();
        assert!(
            failed.is_empty(),
            "invariants violated:\n{}",
            failed.join("\n")
        );
    }
}
