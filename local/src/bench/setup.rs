//! One run's resources (database and prefix, topology, the runner, catalog and users), set
//! up before the measurement and what the report says about them.

use super::client::Load;
use super::report::EffectiveConfig;
use super::{BenchArgs, Flavor, SETTLE, probe};
use crate::child::{Isolated, Runner, post_retrying, spawn_runner_with, wait_healthy};
use anyhow::Context as _;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// One run's resources: its database and prefix, its runner, its users.
pub struct Setup {
    pub flavor: Flavor,
    pub iso: Isolated,
    pub specs: Vec<crate::template::FunctionSpec>,
    pub queues: Vec<String>,
    pub runner: Option<Runner>,
    pub pid: u32,
    pub http: reqwest::Client,
    pub tokens: Vec<String>,
    pub catalog: Vec<inventory::ProductSeed>,
    pub run_id: String,
}

/// The demo catalog without the limited product, with stock that never runs out.
pub fn bench_catalog() -> Vec<inventory::ProductSeed> {
    crate::seed::demo_catalog()
        .into_iter()
        .filter(|p| p.product_id != "sku-limited")
        .map(|mut p| {
            p.stock = 1_000_000_000;
            p
        })
        .collect()
}

impl Setup {
    /// Database, topology, runner, catalog and users.
    pub async fn start(&mut self, args: &BenchArgs) -> anyhow::Result<()> {
        let cfg = self.iso.cfg.clone();
        crate::stack::prepare(&cfg, &self.specs).await?;
        let ctx = shared::context::Context::new(cfg.clone())?;
        let up_args: &[&str] = match self.flavor {
            Flavor::Flow => &[],
            Flavor::Baseline => &["--stand-ins"],
        };
        if self.flavor == Flavor::Baseline {
            crate::baseline::stand_ins::prepare(&ctx.pool, &self.catalog).await?;
        }
        let runner = spawn_runner_with(&self.iso.env, Arc::default(), up_args).await?;
        self.pid = runner.child.id().context("runner pid")?;
        self.runner = Some(runner);
        wait_healthy(&self.http, &self.iso.base, Duration::from_secs(60)).await?;
        if self.flavor == Flavor::Flow {
            crate::seed::seed(&ctx, &self.catalog, Some(Duration::from_secs(60))).await?;
            for i in 0..args.concurrency.max(1) {
                let creds = json!({"email": format!("bench-{}-{i}@example.com", self.run_id), "password": "correct horse battery"});
                let base = &self.iso.base;
                post_retrying(&self.http, &format!("{base}/users"), None, None, &creds).await?;
                let (s, b) =
                    post_retrying(&self.http, &format!("{base}/sessions"), None, None, &creds)
                        .await?;
                anyhow::ensure!(s == 201, "login answered {s}: {b}");
                self.tokens
                    .push(b["token"].as_str().context("token")?.to_string());
            }
        }
        ctx.pool.close().await;
        Ok(())
    }

    /// Waits until nothing is ready, unacknowledged (in flight) or unpublished, for longer
    /// than the broker's figures can lag (`crate::broker::settled`, as `verify` wants it).
    /// Ready messages alone are not enough: with a prefetch of a batch, a busy consumer's
    /// queue reads empty while hundreds of its messages are in flight, and stopping the
    /// runner then would leave them behind for `verify` to find.
    pub async fn quiet(&self, limit: Duration) -> anyhow::Result<()> {
        let ctx = shared::context::Context::new(self.iso.cfg.clone())?;
        let settled = crate::broker::settled(&ctx, &self.queues, limit).await;
        ctx.pool.close().await;
        settled
    }

    pub fn load(&self, args: &BenchArgs, first: usize, rate: Option<f64>) -> Load {
        Load {
            base: self.iso.base.clone(),
            first,
            count: args.orders,
            rate: rate.filter(|r| *r > 0.0),
            concurrency: args.concurrency.max(1),
            tokens: self.tokens.clone(),
            key_prefix: format!("bench-{}", self.run_id),
        }
    }

    pub async fn config(&self, args: &BenchArgs, base_cfg: &shared::Config) -> EffectiveConfig {
        let postgres = match probe::admin(&self.iso.db_url).await {
            Ok(mut c) => probe::pg_settings(&mut c).await.unwrap_or_default(),
            Err(_) => Default::default(),
        };
        let rabbitmq = match probe::Management::new(&self.iso.cfg) {
            Ok(m) => m.info().await.unwrap_or_default(),
            Err(_) => Default::default(),
        };
        let triggers = self
            .specs
            .iter()
            .flat_map(|f| &f.triggers)
            .filter_map(|t| match t {
                crate::template::Trigger::Mq {
                    queue,
                    batch_size,
                    window,
                    ..
                } => Some(format!(
                    "{queue} batch {batch_size} window {} ms",
                    window.as_millis()
                )),
                _ => None,
            })
            .collect();
        EffectiveConfig {
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
            git_commit: git_commit().await,
            orders: args.orders,
            loop_kind: if args.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .into(),
            rate: args.rate,
            concurrency: args.concurrency.max(1),
            catalog: self
                .catalog
                .iter()
                .map(|p| format!("{} {} {}", p.product_id, p.price_cents, p.currency))
                .collect(),
            order_mix: format!(
                "1 to 3 units of one of {} products in turn; 1 card in 20 declined; stock {} each",
                self.catalog.len(),
                self.catalog.first().map_or(0, |p| p.stock)
            ),
            runner_db_pool: base_cfg.db_pool_size,
            bench_db_pool: 1,
            triggers,
            chunk: shared::runner::CHUNK,
            wire_encoding: base_cfg.wire_encoding.content_type().into(),
            // The runner inherits the bench's environment.
            faults: std::env::var("ORDERFLOW_FAULTS")
                .ok()
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "none".into()),
            rate_limit: "off in the child runner (ORDERFLOW_RATE_LIMITS=off: the bench plays many customers from one address)".into(),
            postgres,
            rabbitmq,
            settle_secs: SETTLE.as_secs_f64(),
        }
    }
}

/// The commit of the source tree this binary was built from, `+dirty` with local changes.
async fn git_commit() -> Option<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let head = crate::child::shell("git", &["-C", dir, "rev-parse", "--short=12", "HEAD"])
        .await
        .ok()?;
    let dirty = crate::child::shell("git", &["-C", dir, "status", "--porcelain"])
        .await
        .is_ok_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}
