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
//! This module holds the arguments and the shell around a run: `setup` prepares it,
//! `measure` (or `search`, for `--max`) drives it, `client` places and watches orders,
//! `probe` reads the counters, `stats` computes, `report` prints.

pub mod client;
mod measure;
pub mod probe;
pub mod report;
mod search;
mod setup;
pub mod stats;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use setup::Setup;
use std::path::PathBuf;
use std::time::Duration;

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

pub async fn run(
    base_cfg: shared::Config,
    template: &crate::template::Source,
    args: BenchArgs,
) -> anyhow::Result<bool> {
    let specs = template.specs()?;
    let queues = crate::template_queues(&specs);
    let flavor = if args.baseline {
        Flavor::Baseline
    } else {
        Flavor::Flow
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let mut iso = crate::child::isolate(&base_cfg, flavor.tag(), &run_id, &[])?;
    // The runner it starts reads the same template (`--template`, e.g. with shards).
    iso.env.extend(template.child_env());
    let mut setup = Setup {
        flavor,
        iso,
        specs,
        queues,
        runner: None,
        pid: 0,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(args.concurrency.max(1))
            .build()?,
        tokens: Vec::new(),
        catalog: setup::bench_catalog(),
        run_id,
    };
    let outcome = async {
        setup.start(&args).await?;
        if args.max {
            search::search(&mut setup, &base_cfg, &args).await
        } else {
            measure::measure(&mut setup, &base_cfg, &args).await
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

fn write_json(args: &BenchArgs, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}
