//! The suite's HTTP client: it places orders as a shop front would, through the runner's
//! front door, retrying with the same Idempotency-Key when a fault fails a request, and
//! logging in again when the Redis restart has killed its session.

use crate::child::post_retrying;
use crate::outcomes::Inputs;
use anyhow::Context as _;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The suite's HTTP client: ten users whose sessions die with Redis, and who log in again.
#[derive(Clone)]
pub(super) struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub users: Arc<Vec<serde_json::Value>>,
    pub tokens: Arc<tokio::sync::Mutex<BTreeMap<usize, String>>>,
    /// Order requests that found their session dead and logged in again.
    pub relogins: Arc<AtomicUsize>,
    pub run_id: String,
}

impl Client {
    /// Places order `i` (retrying with its Idempotency-Key) and returns its id.
    pub async fn place(&self, i: usize, inputs: &Inputs) -> anyhow::Result<String> {
        let items: Vec<serde_json::Value> = inputs
            .items
            .iter()
            .map(|(p, q)| json!({"product_id": p, "quantity": q}))
            .collect();
        let body = json!({"items": items, "payment_token": inputs.payment_token});
        let key = format!("chaos-{}-{i}", self.run_id);
        let user = i % self.users.len();
        for _ in 0..20 {
            let token = self.session(user).await?;
            let (s, b) = post_retrying(
                &self.http,
                &format!("{}/orders", self.base),
                Some(&token),
                Some(&key),
                &body,
            )
            .await?;
            if s == 401 {
                self.relogins.fetch_add(1, Ordering::SeqCst);
                let mut t = self.tokens.lock().await;
                if t.get(&user) == Some(&token) {
                    t.remove(&user);
                }
                continue;
            }
            anyhow::ensure!(s == 202, "order {i} answered {s}: {b}");
            return b["order_id"]
                .as_str()
                .map(str::to_string)
                .context("no order_id");
        }
        anyhow::bail!("order {i}: still unauthorized after logging in again 20 times")
    }

    /// A fresh session of the user (the Redis restart may have ended the cached one).
    pub async fn token(&self, user: usize) -> anyhow::Result<String> {
        self.tokens.lock().await.remove(&user);
        self.session(user).await
    }

    /// The user's session token, logging in when there is none.
    async fn session(&self, user: usize) -> anyhow::Result<String> {
        let mut t = self.tokens.lock().await;
        if let Some(tok) = t.get(&user) {
            return Ok(tok.clone());
        }
        let (s, b) = post_retrying(
            &self.http,
            &format!("{}/sessions", self.base),
            None,
            None,
            &self.users[user],
        )
        .await?;
        anyhow::ensure!(s == 201, "login answered {s}: {b}");
        let tok = b["token"].as_str().context("token")?.to_string();
        t.insert(user, tok.clone());
        Ok(tok)
    }
}
