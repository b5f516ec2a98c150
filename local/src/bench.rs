//! `orderflow bench`: the whole order flow under load. It starts the runner as a child
//! process on a fresh database and prefix, places orders over HTTP at a fixed rate or as
//! fast as it can, and reports completed orders per second, accept-to-final latency,
//! per-stage latency, messages per second, the runner's CPU and memory and the invariant
//! check, on screen and as JSON. `--baseline` measures the same broker hops and Postgres
//! commits per order with no business logic (see `baseline.rs`).

use crate::child::{post_retrying, spawn_runner, wait_healthy};
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 2000)]
    pub orders: usize,
    /// Open loop: place this many orders per second.
    #[arg(long, conflicts_with = "max")]
    pub rate: Option<f64>,
    /// Closed loop: `--concurrency` clients placing orders back to back (the default).
    #[arg(long)]
    pub max: bool,
    /// Concurrent clients (and users).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Measure the bare-infrastructure baseline instead.
    #[arg(long)]
    pub baseline: bool,
    /// Keep the run's database and broker objects afterwards.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub kind: String,
    pub orders: usize,
    pub completed: i64,
    pub orders_per_sec: f64,
    /// Orders accepted (202) per second while placing.
    pub accepted_per_sec: f64,
    pub latency_ms: Latency,
    pub stages: Vec<shared::db::StageLatency>,
    pub messages_consumed: i64,
    pub messages_per_sec: f64,
    pub runner_cpu_seconds: f64,
    /// CPU time over wall time: 200 is both cores busy.
    pub runner_cpu_percent: f64,
    /// The runner's high-water mark, set-up (user sign-ups and logins, whose argon2 hashing
    /// is memory-hard by design) included.
    pub peak_rss_bytes: u64,
    /// Resident memory when placing started (after set-up), its peak while orders flowed,
    /// when placing ended (the backlog at its largest) and at the end.
    pub rss_at_start_bytes: u64,
    pub peak_rss_during_run_bytes: u64,
    pub rss_at_backlog_peak_bytes: u64,
    pub rss_at_end_bytes: u64,
    pub violations: usize,
    pub wall_secs: f64,
    pub command: String,
}

/// CPU seconds (user + system) and memory of a process, from /proc.
pub struct ProcSample {
    pub cpu_secs: f64,
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
}

pub fn sample_proc(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // Linux reports stat times in USER_HZ, 100 on every mainstream architecture.
    Some(ProcSample {
        cpu_secs: ticks / 100.0,
        rss_bytes: kb("VmRSS:") * 1024,
        hwm_bytes: kb("VmHWM:") * 1024,
    })
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

pub fn print_report(r: &Report) {
    println!();
    println!("== {} ==", r.kind);
    println!("command:              {}", r.command);
    println!("{}", crate::child::RATE_LIMITS_NOTE);
    println!("completed orders:     {} of {}", r.completed, r.orders);
    println!(
        "orders per second:    {:.1} (accepted at {:.1}/s)",
        r.orders_per_sec, r.accepted_per_sec
    );
    println!(
        "accept-to-final (ms): p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99, r.latency_ms.max
    );
    if !r.stages.is_empty() {
        println!("per stage, event occurred -> handled (ms):");
        for s in &r.stages {
            println!(
                "  {:<22} {:>7} msgs  p50 {:>7.1}  p95 {:>7.1}  p99 {:>7.1}  max {:>7.1}",
                s.consumer, s.count, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
            );
        }
    }
    println!(
        "messages consumed:    {} ({:.0}/s)",
        r.messages_consumed, r.messages_per_sec
    );
    println!(
        "runner CPU:           {:.1} s ({:.0}% of one core)",
        r.runner_cpu_seconds, r.runner_cpu_percent
    );
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "runner memory (MiB):  {:.1} at start, {:.1} peak while orders flowed, {:.1} at the backlog peak, {:.1} at the end; high-water mark {:.1} (set-up included)",
        mib(r.rss_at_start_bytes),
        mib(r.peak_rss_during_run_bytes),
        mib(r.rss_at_backlog_peak_bytes),
        mib(r.rss_at_end_bytes),
        mib(r.peak_rss_bytes)
    );
    println!("invariant violations: {}", r.violations);
}

pub async fn run(
    base_cfg: shared::Config,
    queues: &[String],
    args: BenchArgs,
) -> anyhow::Result<bool> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if args.baseline {
        let report = crate::baseline::run(&base_cfg, &args, command).await?;
        print_report(&report);
        write_json(&args, &report)?;
        return Ok(report.violations == 0);
    }
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let iso = crate::child::isolate(&base_cfg, "bench", &run_id, &[])?;
    let specs = crate::template::parse(crate::template::EMBEDDED)?;
    crate::stack::prepare(&iso.cfg, &specs).await?;
    let ctx = shared::context::Context::new(iso.cfg.clone())?;
    let mut runner = spawn_runner(&iso.env, Arc::default()).await?;
    let pid = runner.child.id().context("runner pid")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let base = iso.base.clone();
    wait_healthy(&http, &base, Duration::from_secs(60)).await?;
    let catalog: Vec<inventory::ProductSeed> = crate::seed::demo_catalog()
        .into_iter()
        .filter(|p| p.product_id != "sku-limited")
        .map(|mut p| {
            p.stock = 1_000_000_000;
            p
        })
        .collect();
    crate::seed::seed(&ctx, &catalog, Some(Duration::from_secs(60))).await?;
    let mut tokens = Vec::new();
    for i in 0..args.concurrency.max(1) {
        let creds = json!({"email": format!("bench-{run_id}-{i}@example.com"), "password": "correct horse battery"});
        post_retrying(&http, &format!("{base}/users"), None, None, &creds).await?;
        let (s, b) = post_retrying(&http, &format!("{base}/sessions"), None, None, &creds).await?;
        anyhow::ensure!(s == 201, "login answered {s}: {b}");
        tokens.push(b["token"].as_str().context("token")?.to_string());
    }
    let before = sample_proc(pid);
    let cpu_before = before.as_ref().map(|s| s.cpu_secs).unwrap_or(0.0);
    let rss_at_start = before.as_ref().map(|s| s.rss_bytes).unwrap_or(0);
    let t0 = Instant::now();

    // Sample the runner's memory while the run goes on.
    let samples: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            while let Some(s) = sample_proc(pid) {
                if let Ok(mut v) = samples.lock() {
                    v.push(s.rss_bytes);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let placed_bar = bar(args.orders as u64, "placed");
    let next = Arc::new(AtomicUsize::new(0));
    let rate_tick = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let clients = futures::future::join_all((0..args.concurrency.max(1)).map(|c| {
        let (http, base, token, next, pb, run_id) = (http.clone(), base.clone(), tokens[c].clone(), next.clone(), placed_bar.clone(), run_id.clone());
        let n = args.orders;
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return anyhow::Ok(());
                }
                if let Some(tick) = rate_tick {
                    let due = t0 + tick * i as u32;
                    tokio::time::sleep_until(due.into()).await;
                }
                let product = ["sku-coffee", "sku-mug", "sku-grinder", "sku-kettle"][i % 4];
                let card = if i % 20 == 7 { "tok_chargeDeclined" } else { "tok_visa" };
                let body = json!({"items": [{"product_id": product, "quantity": 1 + i % 3}], "payment_token": card});
                let (s, b) = post_retrying(&http, &format!("{base}/orders"), Some(&token), Some(&format!("bench-{run_id}-{i}")), &body).await?;
                anyhow::ensure!(s == 202, "order {i} answered {s}: {b}");
                pb.inc(1);
            }
        }
    }))
    .await;
    placed_bar.finish();
    clients.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let placing_secs = t0.elapsed().as_secs_f64();
    let rss_at_backlog_peak = sample_proc(pid).map(|s| s.rss_bytes).unwrap_or(0);

    let final_bar = bar(args.orders as u64, "final");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = order::final_count(&ctx.pool).await?;
        final_bar.set_position(done as u64);
        if done as usize >= args.orders || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    final_bar.finish();
    crate::demo::wait_quiet_ctx(&ctx, queues, Duration::from_secs(60)).await?;
    let end = sample_proc(pid);
    sampler.abort();

    let summary = order::latency_summary(&ctx.pool).await?;
    let mut stages = Vec::new();
    for schema in crate::registry::OUTBOX_SCHEMAS {
        stages.extend(shared::db::stage_latencies(&ctx.pool, schema).await?);
    }
    let consumed: i64 = stages.iter().map(|s| s.count).sum();
    let checks = crate::verify::run(&ctx, queues, &crate::verify::Expect::default()).await?;
    let cpu = end.as_ref().map(|s| s.cpu_secs).unwrap_or(cpu_before) - cpu_before;
    let span = summary.span_secs.max(1e-9);
    let report = Report {
        kind: "orderflow bench".into(),
        orders: args.orders,
        completed: summary.completed,
        orders_per_sec: summary.completed as f64 / span,
        accepted_per_sec: args.orders as f64 / placing_secs.max(1e-9),
        latency_ms: Latency {
            p50: summary.p50_ms,
            p95: summary.p95_ms,
            p99: summary.p99_ms,
            max: summary.max_ms,
        },
        stages,
        messages_consumed: consumed,
        messages_per_sec: consumed as f64 / span,
        runner_cpu_seconds: cpu,
        runner_cpu_percent: cpu / span * 100.0,
        peak_rss_bytes: end.as_ref().map(|s| s.hwm_bytes).unwrap_or(0),
        rss_at_start_bytes: rss_at_start,
        peak_rss_during_run_bytes: samples
            .lock()
            .map(|v| v.iter().copied().max().unwrap_or(0))
            .unwrap_or(0),
        rss_at_backlog_peak_bytes: rss_at_backlog_peak,
        rss_at_end_bytes: end.as_ref().map(|s| s.rss_bytes).unwrap_or(0),
        violations: checks.iter().map(|c| c.violations.len()).sum(),
        wall_secs: started.elapsed().as_secs_f64(),
        command,
    };
    crate::child::stop(&mut runner).await;
    print_report(&report);
    for c in checks.iter().filter(|c| !c.ok()) {
        println!("{}", c.line());
    }
    write_json(&args, &report)?;
    if !args.keep {
        ctx.pool.close().await;
        crate::child::cleanup(&iso, &specs).await?;
    }
    Ok(report.violations == 0 && report.completed as usize == args.orders)
}

fn write_json(args: &BenchArgs, report: &Report) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}
