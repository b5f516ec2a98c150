//! The bench's report: what it holds (also written as JSON), how it reads on screen, and
//! how a run is put beside an earlier one of the other kind (`--compare`).

use super::client::Watch;
use super::probe::{BrokerInfo, PgSettings};
use super::stats::{Comparison, Latency, Rates, Retries, Window, Work};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Everything the run was configured with, as far as it changes the figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EffectiveConfig {
    /// `release`, or `debug` (whose figures mean little).
    pub build: String,
    pub git_commit: Option<String>,
    pub orders: usize,
    /// `open` (at `rate`) or `closed` (`concurrency` clients).
    pub loop_kind: String,
    pub rate: Option<f64>,
    pub concurrency: usize,
    pub catalog: Vec<String>,
    pub order_mix: String,
    pub runner_db_pool: u32,
    pub bench_db_pool: u32,
    /// Per queue trigger: `queue batch N window W ms`.
    pub triggers: Vec<String>,
    pub chunk: usize,
    pub wire_encoding: String,
    pub faults: String,
    pub rate_limit: String,
    pub postgres: PgSettings,
    pub rabbitmq: BrokerInfo,
    pub settle_secs: f64,
}

/// CPU of one group of processes over the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cpu {
    pub who: String,
    pub processes: usize,
    pub cpu_secs: f64,
    pub ms_per_order: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    pub rss_at_start_bytes: u64,
    pub rss_peak_during_run_bytes: u64,
    pub rss_at_end_bytes: u64,
    /// Set-up (argon2 sign-ups) included.
    pub high_water_mark_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub kind: String,
    pub command: String,
    pub config: EffectiveConfig,
    pub window: Window,
    /// From the first scheduled send to the last answer (informative, not a rate's divisor).
    pub placing_secs: f64,
    pub orders_requested: usize,
    pub orders_accepted: u64,
    pub orders_final: u64,
    pub rates: Rates,
    pub messages_in_window: u64,
    pub client_latency_ms: Latency,
    pub client_latency_from: String,
    pub server_latency_ms: Latency,
    pub send_lag_ms: Option<Latency>,
    pub watch: Watch,
    pub retries: Retries,
    pub stages: Vec<shared::db::StageLatency>,
    pub work_total: Work,
    pub work_per_order: Work,
    /// Deliveries and publishes per order the model of the flow predicts for this mix.
    pub expected_deliveries_per_order: f64,
    pub expected_publishes_per_order: f64,
    /// The runner's own counters (`orderflow_messages_total`, `..._events_published_total`).
    pub app_messages_per_order: f64,
    pub app_publishes_per_order: f64,
    pub work_sources: Vec<String>,
    pub cpu: Vec<Cpu>,
    pub cpu_ms_per_order_total: f64,
    pub memory: Memory,
    pub violations: Vec<String>,
    /// How the orders ended, by status and reason (flow runs only). Under overload the
    /// front door refuses (503) rather than let accepted orders expire: an `expired` here
    /// fails the run.
    #[serde(default)]
    pub outcomes: std::collections::BTreeMap<String, u64>,
    pub compared_with: Option<String>,
    pub comparison: Option<Comparison>,
    pub wall_secs: f64,
}

pub const FLOW: &str = "orderflow bench";
pub const BASELINE: &str = "orderflow bench --baseline";

/// The comparison of this run with an earlier report of the other kind.
pub fn compare_with(report: &Report, path: &std::path::Path) -> anyhow::Result<Comparison> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let other: Report = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a bench report of this version", path.display()))?;
    let (flow, base) = match (report.kind.as_str(), other.kind.as_str()) {
        (FLOW, BASELINE) => (&report.work_per_order, &other.work_per_order),
        (BASELINE, FLOW) => (&other.work_per_order, &report.work_per_order),
        (a, b) => {
            anyhow::bail!("--compare puts a flow run beside a baseline run, not {a:?} beside {b:?}")
        }
    };
    Ok(super::stats::compare(
        flow,
        base,
        super::stats::LIKE_FOR_LIKE_TOLERANCE_PCT,
    ))
}

fn lat(l: &Latency) -> String {
    format!(
        "p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}  ({} orders)",
        l.p50, l.p95, l.p99, l.max, l.count
    )
}

/// The report as printed.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let c = &r.config;
    let mib = |b: u64| b as f64 / 1048576.0;
    let _ = writeln!(o, "\n== {} ==", r.kind);
    let _ = writeln!(o, "command:         {}", r.command);
    let _ = writeln!(
        o,
        "build:           {} build, commit {}",
        c.build,
        c.git_commit.as_deref().unwrap_or("unknown")
    );
    if c.build != "release" {
        let _ = writeln!(
            o,
            "                 (not a release build: the figures say little)"
        );
    }
    let load = match c.rate {
        Some(rate) => format!(
            "open loop at {rate} orders/s, at most {} in flight",
            c.concurrency
        ),
        None => format!("closed loop, {} clients", c.concurrency),
    };
    let _ = writeln!(o, "load:            {} orders, {load}", c.orders);
    let _ = writeln!(o, "orders:          {}", c.order_mix);
    let _ = writeln!(o, "catalog:         {}", c.catalog.join(", "));
    let _ = writeln!(
        o,
        "runner:          DB pool {}, chunk {} messages per transaction, wire {}, faults {}, rate limit {}",
        c.runner_db_pool, c.chunk, c.wire_encoding, c.faults, c.rate_limit
    );
    let _ = writeln!(o, "triggers:        {}", c.triggers.join("; "));
    let _ = writeln!(
        o,
        "postgres:        {} (fsync {}, synchronous_commit {}); bench pool {}",
        c.postgres.version, c.postgres.fsync, c.postgres.synchronous_commit, c.bench_db_pool
    );
    let _ = writeln!(
        o,
        "rabbitmq:        {} (Erlang {})",
        c.rabbitmq.rabbitmq_version, c.rabbitmq.erlang_version
    );
    let _ = writeln!(
        o,
        "window:          {:.2} s, {}{}",
        r.window.secs,
        r.window.definition,
        if r.window.complete {
            ""
        } else {
            " (INCOMPLETE: gave up waiting)"
        }
    );
    let _ = writeln!(
        o,
        "orders:          {} requested, {} accepted, {} final (placing took {:.2} s)",
        r.orders_requested, r.orders_accepted, r.orders_final, r.placing_secs
    );
    let _ = writeln!(
        o,
        "per second:      {:.1} orders final, {:.1} accepted, {:.0} messages handled (all over the window)",
        r.rates.orders_final_per_sec, r.rates.orders_accepted_per_sec, r.rates.messages_per_sec
    );
    let _ = writeln!(o, "accept-to-final (ms):");
    let _ = writeln!(o, "  client  {}", lat(&r.client_latency_ms));
    let _ = writeln!(
        o,
        "          from {}, to the poll that saw it final",
        r.client_latency_from
    );
    let _ = writeln!(o, "  server  {}", lat(&r.server_latency_ms));
    let _ = writeln!(
        o,
        "          created_at -> finalized_at (transaction starts)"
    );
    let _ = writeln!(
        o,
        "  resolution: one query every {:.0} ms ({} queries, {:.1} ms mean, {:.1} ms max)",
        r.watch.poll_ms, r.watch.queries, r.watch.query_ms_mean, r.watch.query_ms_max
    );
    if let Some(lag) = &r.send_lag_ms {
        let _ = writeln!(o, "  sends behind schedule: {}", lat(lag));
    }
    let t = &r.retries;
    if t.happened() {
        let by: Vec<String> = t
            .retried_by_status
            .iter()
            .map(|(s, n)| format!("{n} x {s}"))
            .collect();
        let _ = writeln!(
            o,
            "RETRIES:         {} orders retried ({}), {:.2} s retrying in all, {:.2} s at most for one order",
            t.orders_retried,
            by.join(", "),
            t.retry_secs_total,
            t.retry_secs_max
        );
    } else {
        let _ = writeln!(
            o,
            "retries:         none (no 5xx answer, no transport error)"
        );
    }
    if t.errors() > 0 {
        let by: Vec<String> = t
            .errors_by_status
            .iter()
            .map(|(s, n)| format!("{n} x {s}"))
            .collect();
        let _ = writeln!(
            o,
            "ERRORS:          {} orders failed: {}",
            t.errors(),
            by.join(", ")
        );
    }
    if !r.stages.is_empty() {
        let _ = writeln!(o, "per stage, event occurred -> handled (ms):");
        for s in &r.stages {
            let _ = writeln!(
                o,
                "  {:<22} {:>7} msgs  p50 {:>7.1}  p95 {:>7.1}  p99 {:>7.1}  max {:>7.1}",
                s.consumer, s.count, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
            );
        }
    }
    let w = &r.work_per_order;
    let _ = writeln!(
        o,
        "work per order:  {:.2} deliveries, {:.2} confirmed publishes, {:.2} commits, {:.2} inbox rows, {:.2} outbox rows",
        w.deliveries, w.publishes, w.commits, w.inbox_rows, w.outbox_rows
    );
    let _ = writeln!(
        o,
        "                 {:.2} queue batches ({:.1} messages a batch: fuller batches, fewer commits)",
        w.batches,
        if w.batches > 0.0 {
            w.deliveries / w.batches
        } else {
            0.0
        }
    );
    let _ = writeln!(
        o,
        "                 model of the flow: {:.2} deliveries, {:.2} publishes; runner's counters: {:.2} messages, {:.2} publishes",
        r.expected_deliveries_per_order,
        r.expected_publishes_per_order,
        r.app_messages_per_order,
        r.app_publishes_per_order
    );
    for s in &r.work_sources {
        let _ = writeln!(o, "                 {s}");
    }
    let _ = writeln!(
        o,
        "CPU per order (ms), from the window's start until all work was done:"
    );
    for cpu in &r.cpu {
        let _ = writeln!(
            o,
            "  {:<34} {:>8.2}  ({:.2} s, {} processes)",
            cpu.who, cpu.ms_per_order, cpu.cpu_secs, cpu.processes
        );
    }
    let _ = writeln!(o, "  {:<34} {:>8.2}", "total", r.cpu_ms_per_order_total);
    let m = &r.memory;
    let _ = writeln!(
        o,
        "runner memory:   {:.1} MiB at start, {:.1} peak during the run, {:.1} at the end; high-water mark {:.1} (set-up included)",
        mib(m.rss_at_start_bytes),
        mib(m.rss_peak_during_run_bytes),
        mib(m.rss_at_end_bytes),
        mib(m.high_water_mark_bytes)
    );
    if !r.outcomes.is_empty() {
        let by: Vec<String> = r.outcomes.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(o, "outcomes:        {}", by.join(", "));
    }
    if r.violations.is_empty() {
        let _ = writeln!(o, "violations:      none");
    } else {
        let _ = writeln!(o, "VIOLATIONS:      {}", r.violations.len());
        for v in &r.violations {
            let _ = writeln!(o, "  {v}");
        }
    }
    if let (Some(cmp), Some(with)) = (&r.comparison, &r.compared_with) {
        let _ = writeln!(o, "like for like, per order, against {with}:");
        let _ = writeln!(
            o,
            "  {:<22} {:>10} {:>10} {:>8}",
            "", "flow", "baseline", "diff"
        );
        for row in &cmp.rows {
            let _ = writeln!(
                o,
                "  {:<22} {:>10.2} {:>10.2} {:>7.1}%{}",
                row.what,
                row.flow,
                row.baseline,
                row.diff_pct,
                if row.within { "" } else { "  <- differs" }
            );
        }
        if cmp.rows.iter().any(|r| r.what == "commits" && !r.within) {
            let _ = writeln!(
                o,
                "  (commits follow the batches: one per chunk of 32 messages, one per batch that published, four per created order; runs that batch differently commit differently, so compare at a load where both batch alike, on an otherwise idle machine)"
            );
        }
        let _ = writeln!(
            o,
            "  {}",
            if cmp.like_for_like() {
                format!("like for like: every count within {}%", cmp.tolerance_pct)
            } else {
                format!(
                    "NOT like for like: counts differ by more than {}%, so the ratio of the two runs is not the cost of the business logic alone",
                    cmp.tolerance_pct
                )
            }
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_says_which_window_and_flags_retries_and_errors() {
        let mut r = Report {
            kind: FLOW.into(),
            window: super::super::stats::Window {
                definition: super::super::stats::WINDOW_DEFINITION.into(),
                secs: 3.0,
                complete: true,
            },
            ..Default::default()
        };
        r.config.build = "release".into();
        let text = render(&r);
        assert!(text.contains("3.00 s, from the first send"));
        assert!(text.contains("retries:         none"));
        assert!(!text.contains("ERRORS"));
        r.retries.retried_by_status.insert("503".into(), 2);
        r.retries.orders_retried = 1;
        r.retries.errors_by_status.insert("transport".into(), 1);
        let text = render(&r);
        assert!(text.contains("RETRIES:         1 orders retried (2 x 503)"));
        assert!(text.contains("ERRORS:          1 orders failed: 1 x transport"));
    }

    #[test]
    fn compare_needs_one_run_of_each_kind() {
        let dir = std::env::temp_dir().join(format!("bench-report-{}", uuid::Uuid::new_v4()));
        let flow = Report {
            kind: FLOW.into(),
            work_per_order: Work {
                deliveries: 14.0,
                publishes: 7.0,
                commits: 9.0,
                inbox_rows: 14.0,
                outbox_rows: 7.0,
                batches: 4.0,
            },
            ..Default::default()
        };
        std::fs::write(&dir, serde_json::to_string(&flow).unwrap_or_default()).ok();
        let base = Report {
            kind: BASELINE.into(),
            work_per_order: flow.work_per_order,
            ..Default::default()
        };
        let cmp = compare_with(&base, &dir).expect("compares");
        assert!(cmp.like_for_like());
        assert!(compare_with(&flow, &dir).is_err());
        std::fs::remove_file(&dir).ok();
    }
}
