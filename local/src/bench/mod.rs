//! `orderflow bench`: the whole order flow under load, measured so that the figures can be
//! trusted and compared.
//!
//! It starts the runner as a child process on a fresh database and prefix (with
//! `--baseline`, the same runner with stand-ins for the business functions, see
//! `crate::baseline`), places orders over HTTP on a schedule (`--rate`, open loop) or back
//! to back (closed loop), and watches them become final. Then it reports:
//! - every rate over one window, from the first scheduled send to the client seeing the last
//!   order final (`stats::window`);
//! - client-side accept-to-final latency from each order's scheduled send (no coordinated
//!   omission), beside the server-side one (`created_at -> finalized_at`);
//! - every retried answer by status and the time retrying took;
//! - the work per order (deliveries, confirmed publishes, commits, inbox and outbox rows),
//!   counted by RabbitMQ and Postgres the same way for the flow and the baseline, and set
//!   side by side with `--compare` (the ratio means something only when they match);
//! - CPU per order of the runner, Postgres, RabbitMQ, Redis and the bench itself;
//! - the effective configuration, and the invariant check.
//!
//! `--max` searches the highest open-loop rate that keeps the client p99 under `--p99-ms`
//! with no error and no retry, and that the system drains as fast as it is offered.
//!
//! This module is the thin shell: `client` places and watches, `probe` reads the counters,
//! `stats` computes, `report` prints.

pub mod client;
pub mod probe;
pub mod report;
pub mod stats;

use crate::child::{Isolated, Runner, post_retrying, spawn_runner_with, wait_healthy};
use anyhow::Context as _;
use client::{Load, Watcher};
use indicatif::{ProgressBar, ProgressStyle};
use report::{Cpu, EffectiveConfig, Memory, Report};
use serde_json::json;
use stats::{Group, Latency, Work};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Orders to place (per step with --max).
    #[arg(long, default_value_t = 2000)]
    pub orders: usize,
    /// Open loop: place this many orders per second, each at its scheduled time whatever
    /// became of the earlier ones. Without it: closed loop, `--concurrency` clients placing
    /// orders back to back.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Closed loop: clients (and users). Open loop: most requests in flight at once (a send
    /// waiting past it counts in its order's latency).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Search the highest open-loop rate whose client p99 stays under --p99-ms with no error,
    /// no retry, and orders drained at 90% of the offered rate or more: steps of --orders
    /// orders from --rate (50 by default), 25% up each step, stopping at the first step that
    /// fails. Give each step several seconds of orders, so that a backlog has time to show.
    #[arg(long)]
    pub max: bool,
    /// The p99 bound of --max, in milliseconds.
    #[arg(long, default_value_t = 250.0)]
    pub p99_ms: f64,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Measure the baseline: the same runner and work with stand-ins for the business logic.
    #[arg(long)]
    pub baseline: bool,
    /// Put this run's work per order beside an earlier report (JSON) of the other kind.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Keep the run's database and broker objects afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// Postgres backends report statistics within 10 s of going idle and RabbitMQ its counters
/// every 5 s: the bench waits this long after the set-up, so that its counters are complete
/// before the first reading.
const SETTLE: Duration = Duration::from_secs(11);
/// How long after the last send the bench waits for orders to become final.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);
/// Most steps of --max, and how much faster each one goes.
const MAX_STEPS: usize = 12;
const STEP_FACTOR: f64 = 1.25;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavor {
    Flow,
    Baseline,
}

impl Flavor {
    fn tag(self) -> &'static str {
        match self {
            Flavor::Flow => "bench",
            Flavor::Baseline => "base",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Flavor::Flow => report::FLOW,
            Flavor::Baseline => report::BASELINE,
        }
    }
    /// Where the client watches orders become final.
    fn orders_table(self) -> &'static str {
        match self {
            Flavor::Flow => "orders.orders",
            Flavor::Baseline => "baseline.orders",
        }
    }
}

/// One run's resources: its database and prefix, its runner, its users.
struct Setup {
    flavor: Flavor,
    iso: Isolated,
    specs: Vec<crate::template::FunctionSpec>,
    queues: Vec<String>,
    runner: Option<Runner>,
    pid: u32,
    http: reqwest::Client,
    tokens: Vec<String>,
    catalog: Vec<inventory::ProductSeed>,
    run_id: String,
}

pub fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} {per_sec} {elapsed_precise}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// The demo catalog without the limited product, with stock that never runs out.
fn bench_catalog() -> Vec<inventory::ProductSeed> {
    crate::seed::demo_catalog()
        .into_iter()
        .filter(|p| p.product_id != "sku-limited")
        .map(|mut p| {
            p.stock = 1_000_000_000;
            p
        })
        .collect()
}

pub async fn run(
    base_cfg: shared::Config,
    queues: &[String],
    args: BenchArgs,
) -> anyhow::Result<bool> {
    let flavor = if args.baseline {
        Flavor::Baseline
    } else {
        Flavor::Flow
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let iso = crate::child::isolate(&base_cfg, flavor.tag(), &run_id, &[])?;
    let mut setup = Setup {
        flavor,
        iso,
        specs: crate::template::parse(crate::template::EMBEDDED)?,
        queues: queues.to_vec(),
        runner: None,
        pid: 0,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(args.concurrency.max(1))
            .build()?,
        tokens: Vec::new(),
        catalog: bench_catalog(),
        run_id,
    };
    let outcome = async {
        setup.start(&args).await?;
        if args.max {
            search(&mut setup, &base_cfg, &args).await
        } else {
            measure(&mut setup, &base_cfg, &args).await
        }
    }
    .await;
    if let Some(runner) = setup.runner.as_mut() {
        crate::child::stop(runner).await;
    }
    if !args.keep
        && let Err(e) = crate::child::cleanup(&setup.iso, &setup.specs).await
    {
        eprintln!("bench: could not remove the run's database or broker objects: {e:#}");
    }
    outcome
}

impl Setup {
    /// Database, topology, runner, catalog and users; then the counters settle.
    async fn start(&mut self, args: &BenchArgs) -> anyhow::Result<()> {
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

    async fn quiet(&self, watcher: &Watcher, limit: Duration) -> anyhow::Result<()> {
        let names = &shared::topology::Names::new(self.iso.cfg.prefix.clone());
        let queues: Vec<String> = self.queues.iter().map(|q| names.queue(q)).collect();
        let deadline = Instant::now() + limit;
        let mut rounds = 0;
        while rounds < 3 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the system did not go quiet within {limit:?}"
            );
            let busy = probe::ready(&self.iso.cfg.amqp_url, &queues).await?
                + u64::try_from(watcher.unpublished().await?).unwrap_or(0);
            rounds = if busy == 0 { rounds + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    fn load(&self, args: &BenchArgs, first: usize, rate: Option<f64>) -> Load {
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

    async fn config(&self, args: &BenchArgs, base_cfg: &shared::Config) -> EffectiveConfig {
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
            rate_limit: "none (this build has no rate limiter)".into(),
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

async fn measure(
    setup: &mut Setup,
    base_cfg: &shared::Config,
    args: &BenchArgs,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let config = setup.config(args, base_cfg).await;
    let db_name = setup.iso.db_name.clone();
    let mgmt = probe::Management::new(&setup.iso.cfg).ok();
    let table = setup.flavor.orders_table();
    let (inbox_before, outbox_before) = {
        let w = Watcher::new(&setup.iso.cfg.database_url, table)?;
        setup.quiet(&w, Duration::from_secs(60)).await?;
        let rows = probe::rows(&w.pool).await?;
        w.pool.close().await;
        rows
    };
    println!(
        "set-up done; waiting {} s for Postgres and RabbitMQ to count it",
        SETTLE.as_secs()
    );
    tokio::time::sleep(SETTLE).await;
    // The broker's counters first (waiting for them adds nothing to the others), then the
    // commit counter, then CPU, right before the first send.
    let metrics_before = probe::scrape(&setup.http, &setup.iso.base).await;
    let broker_before = settled_counts(mgmt.as_ref(), &setup.iso.cfg.prefix, &metrics_before).await;
    let commits_before =
        probe::commits(&mut probe::admin(&setup.iso.db_url).await?, &db_name).await?;
    let procs_before = probe::procs();
    let rss_at_start = probe::memory(setup.pid).map_or(0, |m| m.0);

    let watcher = Watcher::new(&setup.iso.cfg.database_url, table)?;
    let t0 = Instant::now();
    let t0_wall = chrono::Utc::now();
    let peak = Arc::new(Mutex::new(rss_at_start));
    let sampler = {
        let (peak, pid) = (peak.clone(), setup.pid);
        tokio::spawn(async move {
            while let Some((rss, _)) = probe::memory(pid) {
                if let Ok(mut p) = peak.lock() {
                    *p = (*p).max(rss);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let load = setup.load(args, 0, args.rate);
    let (placed, finals) = (
        bar(args.orders as u64, "placed"),
        bar(args.orders as u64, "final"),
    );
    let out = client::run(
        &setup.http,
        &watcher,
        &load,
        t0,
        DRAIN_LIMIT,
        (&placed, &finals),
    )
    .await?;
    placed.finish();
    finals.finish();
    setup.quiet(&watcher, Duration::from_secs(60)).await?;
    let procs_after = probe::procs();
    let metrics_after = probe::scrape(&setup.http, &setup.iso.base).await;
    sampler.abort();
    let memory_end = probe::memory(setup.pid).unwrap_or_default();

    // Stopping the runner and closing the watcher's connection make their backends exit,
    // which is when Postgres counts their last transactions.
    if let Some(runner) = setup.runner.as_mut() {
        crate::child::stop(runner).await;
    }
    setup.runner = None;
    watcher.pool.close().await;
    let mut admin = probe::admin(&setup.iso.db_url).await?;
    let flushed = Instant::now();
    while probe::backends(&mut admin, &db_name).await? > 0
        && flushed.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let commits_after = probe::commits(&mut admin, &db_name).await?;
    let own_queries = watcher.queries.load(Ordering::SeqCst) as i64;
    let broker_after = settled_counts(mgmt.as_ref(), &setup.iso.cfg.prefix, &metrics_after).await;

    let ctx = shared::context::Context::new(setup.iso.cfg.clone())?;
    let (inbox_after, outbox_after) = probe::rows(&ctx.pool).await?;
    let window = stats::window(&out.records, out.stopped_at);
    let window_end = t0_wall + chrono::Duration::milliseconds((window.secs * 1000.0) as i64);
    let messages_in_window = probe::handled_between(&ctx.pool, t0_wall, window_end).await?;
    let server = Latency::of(&probe::server_latencies(&ctx.pool, table).await?);
    let mut stages = Vec::new();
    for schema in crate::registry::OUTBOX_SCHEMAS {
        stages.extend(shared::db::stage_latencies(&ctx.pool, schema).await?);
    }
    let accepted = out.records.iter().filter(|r| r.accepted.is_some()).count() as u64;
    let finals_n = out
        .records
        .iter()
        .filter(|r| r.final_seen.is_some())
        .count() as u64;
    let violations = match setup.flavor {
        Flavor::Flow => crate::verify::run(&ctx, &setup.queues)
            .await?
            .iter()
            .filter(|c| !c.ok())
            .map(|c| c.line())
            .collect(),
        Flavor::Baseline => {
            let names = &ctx.names;
            let dlqs: Vec<String> = setup
                .queues
                .iter()
                .map(|q| names.dead_letter_queue(q))
                .collect();
            stats::baseline_violations(
                accepted,
                finals_n,
                probe::unpublished(&ctx.pool).await?,
                probe::ready(&setup.iso.cfg.amqp_url, &dlqs).await?,
            )
        }
    };
    ctx.pool.close().await;

    let (broker_work, sources) = match (broker_before, broker_after) {
        (Some(b), Some(a)) => (
            Some((a.deliveries.saturating_sub(b.deliveries), a.publishes.saturating_sub(b.publishes))),
            "deliveries and publishes: RabbitMQ management API, deliver_get of the run's queues and publish_in of its exchanges (every publish is confirmed)".to_string(),
        ),
        _ => (
            None,
            "deliveries and publishes: the runner's own counters (the management API did not answer)".to_string(),
        ),
    };
    let app = |name: &str| {
        stats::prom_sum(&metrics_after, name, &[]) - stats::prom_sum(&metrics_before, name, &[])
    };
    let app_messages = app("orderflow_messages_total");
    let app_publishes = app("orderflow_events_published_total");
    let total = Work {
        deliveries: broker_work.map_or(app_messages, |w| w.0 as f64),
        publishes: broker_work.map_or(app_publishes, |w| w.1 as f64),
        commits: (commits_after - commits_before - own_queries) as f64,
        inbox_rows: (inbox_after - inbox_before) as f64,
        outbox_rows: (outbox_after - outbox_before) as f64,
        batches: app("orderflow_batch_size_count"),
    };
    let declined = out
        .accepted
        .iter()
        .filter(|i| client::card(**i) != "tok_visa")
        .count() as u64;
    let (expected_d, expected_p) = crate::baseline::model::expected_per_order(
        &crate::baseline::model::consumers(&setup.specs),
        accepted,
        declined,
    );
    let per = |x: f64| x / accepted.max(1) as f64;
    let groups = [
        (format!("runner (pid {})", setup.pid), Group::Pid(setup.pid)),
        (
            "postgres (every postgres process)".to_string(),
            Group::Comm("postgres"),
        ),
        (
            "rabbitmq (beam.smp and children)".to_string(),
            Group::Tree("beam.smp"),
        ),
        (
            "redis (redis-server)".to_string(),
            Group::Comm("redis-server"),
        ),
        (
            "bench (this process)".to_string(),
            Group::Pid(std::process::id()),
        ),
    ];
    let cpu: Vec<Cpu> = groups
        .into_iter()
        .map(|(who, g)| {
            let secs =
                stats::group_ticks(&procs_before, &procs_after, &g) as f64 / probe::TICKS_PER_SEC;
            Cpu {
                who,
                processes: stats::members(&procs_after, &g).len(),
                cpu_secs: secs,
                ms_per_order: per(secs * 1000.0),
            }
        })
        .collect();
    let retries = stats::retries(&out.records);
    let client_ms: Vec<f64> = out
        .records
        .iter()
        .filter_map(|r| r.client_latency_ms())
        .collect();
    let lags: Vec<f64> = out.records.iter().filter_map(|r| r.send_lag_ms()).collect();
    let mut report = Report {
        kind: setup.flavor.kind().into(),
        command,
        rates: stats::rates(&window, finals_n, accepted, messages_in_window as u64),
        placing_secs: out
            .records
            .iter()
            .filter_map(|r| r.accepted)
            .fold(0.0, f64::max),
        window,
        orders_requested: args.orders,
        orders_accepted: accepted,
        orders_final: finals_n,
        messages_in_window: messages_in_window as u64,
        client_latency_ms: Latency::of(&client_ms),
        client_latency_from: if args.rate.is_some() {
            "each order's scheduled send (open loop: a late send counts)".into()
        } else {
            "each order's first attempt (closed loop: no schedule)".into()
        },
        server_latency_ms: server,
        send_lag_ms: args.rate.map(|_| Latency::of(&lags)),
        watch: out.watch,
        retries,
        stages,
        work_total: total,
        work_per_order: total.per_order(accepted),
        expected_deliveries_per_order: expected_d,
        expected_publishes_per_order: expected_p,
        app_messages_per_order: per(app_messages),
        app_publishes_per_order: per(app_publishes),
        work_sources: vec![
            sources,
            format!(
                "commits: pg_stat_database.xact_commit of the run's database (every transaction, each autocommit statement one), less the bench's own {own_queries} (its queries and connections)"
            ),
            "inbox and outbox rows: counted in every service's tables".into(),
        ],
        cpu_ms_per_order_total: cpu.iter().map(|c| c.ms_per_order).sum(),
        cpu,
        memory: Memory {
            rss_at_start_bytes: rss_at_start,
            rss_peak_during_run_bytes: peak.lock().map_or(0, |p| *p),
            rss_at_end_bytes: memory_end.0,
            high_water_mark_bytes: memory_end.1,
        },
        violations,
        config,
        ..Default::default()
    };
    if let Some(path) = &args.compare {
        report.comparison = Some(report::compare_with(&report, path)?);
        report.compared_with = Some(path.display().to_string());
    }
    report.wall_secs = started.elapsed().as_secs_f64();
    print!("{}", report::render(&report));
    write_json(args, &serde_json::to_value(&report)?)?;
    Ok(report.violations.is_empty()
        && report.retries.errors() == 0
        && report.window.complete
        && report.comparison.as_ref().is_none_or(|c| c.like_for_like()))
}

/// The management API's counters once they are current. The broker refreshes them every
/// 5 s, later when it is busy: they count as current once they have reached what the
/// runner's own counters (`metrics`) say was delivered and published and stopped moving, or
/// when they have not moved for 8 s (they then differ from the runner's, and the report
/// shows both), or after a minute.
async fn settled_counts(
    m: Option<&probe::Management>,
    prefix: &str,
    metrics: &str,
) -> Option<probe::BrokerCounts> {
    let m = m?;
    let delivered = stats::prom_sum(metrics, "orderflow_messages_total", &[]);
    let published = stats::prom_sum(metrics, "orderflow_events_published_total", &[]);
    let started = Instant::now();
    let mut last = m.counts(prefix).await.ok()?;
    let mut still_since = Instant::now();
    loop {
        let still = still_since.elapsed();
        if (probe::caught_up(&last, delivered, published) && still >= Duration::from_secs(1))
            || still >= Duration::from_secs(8)
            || started.elapsed() >= Duration::from_secs(60)
        {
            return Some(last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = m.counts(prefix).await.ok()?;
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
}

/// One step of --max.
#[derive(Debug, Clone, serde::Serialize)]
struct Step {
    rate: f64,
    window_secs: f64,
    orders_final_per_sec: f64,
    /// From the first final order to the last (see `stats::drain_rate`).
    drain_per_sec: f64,
    client_latency_ms: Latency,
    retried: u64,
    errors: u64,
    complete: bool,
    pass: bool,
}

async fn search(
    setup: &mut Setup,
    base_cfg: &shared::Config,
    args: &BenchArgs,
) -> anyhow::Result<bool> {
    let config = setup.config(args, base_cfg).await;
    let watcher = Watcher::new(&setup.iso.cfg.database_url, setup.flavor.orders_table())?;
    let mut rate = args.rate.filter(|r| *r > 0.0).unwrap_or(50.0);
    let mut steps: Vec<Step> = Vec::new();
    println!(
        "searching the highest rate with client p99 <= {} ms, no error, no retry, drained at {}% of the rate or more ({} orders a step)",
        args.p99_ms,
        stats::SUSTAINED_SHARE * 100.0,
        args.orders
    );
    for step in 0..MAX_STEPS {
        let load = setup.load(args, step * args.orders, Some(rate));
        let (placed, finals) = (
            bar(args.orders as u64, "placed"),
            bar(args.orders as u64, "final"),
        );
        let out = client::run(
            &setup.http,
            &watcher,
            &load,
            Instant::now(),
            DRAIN_LIMIT,
            (&placed, &finals),
        )
        .await?;
        placed.finish();
        finals.finish();
        setup.quiet(&watcher, Duration::from_secs(120)).await?;
        let window = stats::window(&out.records, out.stopped_at);
        let retries = stats::retries(&out.records);
        let client_ms: Vec<f64> = out
            .records
            .iter()
            .filter_map(|r| r.client_latency_ms())
            .collect();
        let latency = Latency::of(&client_ms);
        let finals_n = client_ms.len() as u64;
        let drain = stats::drain_rate(&out.records).unwrap_or(0.0);
        let s = Step {
            rate,
            window_secs: window.secs,
            orders_final_per_sec: finals_n as f64 / window.secs,
            drain_per_sec: drain,
            client_latency_ms: latency,
            retried: retries.orders_retried,
            errors: retries.errors(),
            complete: window.complete,
            pass: window.complete
                && retries.errors() == 0
                && !retries.happened()
                && latency.p99 <= args.p99_ms
                && drain >= stats::SUSTAINED_SHARE * rate,
        };
        println!(
            "rate {:>8.1}/s: {:.1} final/s over {:.2} s (drained at {:.1}/s), client p99 {:.1} ms (max {:.1}), {} retried, {} errors -> {}",
            s.rate,
            s.orders_final_per_sec,
            s.window_secs,
            s.drain_per_sec,
            latency.p99,
            latency.max,
            s.retried,
            s.errors,
            if s.pass { "pass" } else { "FAIL" }
        );
        let pass = s.pass;
        steps.push(s);
        if !pass {
            break;
        }
        rate *= STEP_FACTOR;
    }
    watcher.pool.close().await;
    let best = steps
        .iter()
        .filter(|s| s.pass)
        .map(|s| s.rate)
        .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))));
    match best {
        Some(r) => println!(
            "highest rate meeting the bound: {r:.1} orders/s (the next step failed or steps ran out)"
        ),
        None => println!("no step met the bound: start lower with --rate"),
    }
    let ctx = shared::context::Context::new(setup.iso.cfg.clone())?;
    let violations: Vec<String> = if setup.flavor == Flavor::Flow {
        crate::verify::run(&ctx, &setup.queues)
            .await?
            .iter()
            .filter(|c| !c.ok())
            .map(|c| c.line())
            .collect()
    } else {
        Vec::new()
    };
    ctx.pool.close().await;
    for v in &violations {
        println!("VIOLATION: {v}");
    }
    write_json(
        args,
        &json!({"kind": format!("{} --max", setup.flavor.kind()), "config": config, "p99_bound_ms": args.p99_ms,
                "steps": steps, "highest_passing_rate": best, "violations": violations}),
    )?;
    Ok(best.is_some() && violations.is_empty())
}

fn write_json(args: &BenchArgs, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}
