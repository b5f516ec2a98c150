//! The bench's arithmetic, kept pure so that each figure of the report has a test:
//! percentiles, the one window every rate is divided by, what retries cost, work per order,
//! CPU per order, and the like-for-like comparison of a flow run with a baseline run.
//!
//! Times are seconds since the run's start (the first order's scheduled send).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// p50/p95/p99/max in milliseconds over `count` samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest rank (no interpolation): every figure reported is a latency that was observed.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Latency {
    pub fn of(samples_ms: &[f64]) -> Latency {
        let mut v: Vec<f64> = samples_ms
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        Latency {
            count: v.len(),
            p50: percentile(&v, 50.0),
            p95: percentile(&v, 95.0),
            p99: percentile(&v, 99.0),
            max: v.last().copied().unwrap_or(0.0),
        }
    }
}

/// What the client saw of one order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderRecord {
    /// When the open loop meant to send it (None in the closed loop, which has no schedule).
    pub scheduled: Option<f64>,
    /// When its first attempt went out.
    pub first_send: f64,
    /// When the accepting answer (202) came back.
    pub accepted: Option<f64>,
    /// When the client first saw it final.
    pub final_seen: Option<f64>,
    /// Status of every attempt that was retried ("503", or "transport" for no answer).
    pub retried: Vec<String>,
    /// Seconds from the first attempt to the start of the last one.
    pub retry_secs: f64,
    /// The last answer when it was not 202 ("transport" for none): the order failed.
    pub error: Option<String>,
}

impl OrderRecord {
    /// Client-side accept-to-final latency: from the scheduled send in the open loop (a late
    /// send counts against the system, no coordinated omission), from the first attempt in
    /// the closed loop.
    pub fn client_latency_ms(&self) -> Option<f64> {
        let from = self.scheduled.unwrap_or(self.first_send);
        self.final_seen.map(|f| (f - from) * 1000.0)
    }

    /// How late the first attempt left against the schedule (open loop only).
    pub fn send_lag_ms(&self) -> Option<f64> {
        self.scheduled
            .map(|s| (self.first_send - s).max(0.0) * 1000.0)
    }
}

/// The one window every per-second figure is divided by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub definition: String,
    pub secs: f64,
    /// False when the run gave up waiting before every accepted order was final.
    pub complete: bool,
}

pub const WINDOW_DEFINITION: &str = "from the first send (the first order's scheduled time) to the client seeing the last order final";

/// The window of a run: it ends at the last final order the client saw, or where the client
/// gave up waiting (`gave_up_at`) when an accepted order never became final.
pub fn window(records: &[OrderRecord], gave_up_at: f64) -> Window {
    let accepted = records.iter().filter(|r| r.accepted.is_some()).count();
    let finals: Vec<f64> = records.iter().filter_map(|r| r.final_seen).collect();
    let complete = finals.len() == accepted;
    let end = if complete {
        finals.iter().copied().fold(0.0, f64::max)
    } else {
        gave_up_at
    };
    Window {
        definition: WINDOW_DEFINITION.into(),
        secs: end.max(1e-9),
        complete,
    }
}

/// Every rate of the report, over the same window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub orders_final_per_sec: f64,
    pub orders_accepted_per_sec: f64,
    /// Messages handled (inbox rows written) inside the window.
    pub messages_per_sec: f64,
}

pub fn rates(w: &Window, finals: u64, accepted: u64, messages_in_window: u64) -> Rates {
    Rates {
        orders_final_per_sec: finals as f64 / w.secs,
        orders_accepted_per_sec: accepted as f64 / w.secs,
        messages_per_sec: messages_in_window as f64 / w.secs,
    }
}

/// How fast orders became final once they did, from the first final to the last: a rate
/// the system sustains keeps this near the offered rate, whatever the latency level, while
/// one beyond its capacity drains slower (a backlog builds), however short the step.
pub fn drain_rate(records: &[OrderRecord]) -> Option<f64> {
    let finals: Vec<f64> = records.iter().filter_map(|r| r.final_seen).collect();
    let first = finals.iter().copied().fold(f64::INFINITY, f64::min);
    let last = finals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (finals.len() >= 2 && last > first).then(|| (finals.len() - 1) as f64 / (last - first))
}

/// The share of the offered rate a step of --max must drain at to count as sustained.
pub const SUSTAINED_SHARE: f64 = 0.9;

/// Answers that were retried, orders that failed, and the time retrying took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Retries {
    /// Retried attempts by status ("500", "503", "transport").
    pub retried_by_status: BTreeMap<String, u64>,
    pub orders_retried: u64,
    pub retry_secs_total: f64,
    pub retry_secs_max: f64,
    /// Orders that failed for good, by their last status.
    pub errors_by_status: BTreeMap<String, u64>,
}

impl Retries {
    pub fn happened(&self) -> bool {
        self.orders_retried > 0
    }
    pub fn errors(&self) -> u64 {
        self.errors_by_status.values().sum()
    }
}

pub fn retries(records: &[OrderRecord]) -> Retries {
    let mut r = Retries::default();
    for o in records {
        for status in &o.retried {
            *r.retried_by_status.entry(status.clone()).or_default() += 1;
        }
        if !o.retried.is_empty() {
            r.orders_retried += 1;
            r.retry_secs_total += o.retry_secs;
            r.retry_secs_max = r.retry_secs_max.max(o.retry_secs);
        }
        if let Some(e) = &o.error {
            *r.errors_by_status.entry(e.clone()).or_default() += 1;
        }
    }
    r
}

/// Work the run caused, as totals (counter deltas) and per order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Work {
    pub deliveries: f64,
    pub publishes: f64,
    pub commits: f64,
    pub inbox_rows: f64,
    pub outbox_rows: f64,
    /// Queue function invocations: commits follow them (one per chunk, one to mark what was
    /// published), so two runs commit alike only when they batch alike.
    #[serde(default)]
    pub batches: f64,
}

impl Work {
    pub fn per_order(&self, orders: u64) -> Work {
        let n = orders.max(1) as f64;
        Work {
            deliveries: self.deliveries / n,
            publishes: self.publishes / n,
            commits: self.commits / n,
            inbox_rows: self.inbox_rows / n,
            outbox_rows: self.outbox_rows / n,
            batches: self.batches / n,
        }
    }

    fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("deliveries", self.deliveries),
            ("confirmed publishes", self.publishes),
            ("commits", self.commits),
            ("inbox rows", self.inbox_rows),
            ("outbox rows", self.outbox_rows),
            ("batches", self.batches),
        ]
    }
}

/// How far a baseline may be from the flow, per work count, and still be like for like.
pub const LIKE_FOR_LIKE_TOLERANCE_PCT: f64 = 5.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRow {
    pub what: String,
    pub flow: f64,
    pub baseline: f64,
    /// (baseline - flow) / flow, in percent.
    pub diff_pct: f64,
    pub within: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub tolerance_pct: f64,
    pub rows: Vec<CompareRow>,
}

impl Comparison {
    pub fn like_for_like(&self) -> bool {
        self.rows.iter().all(|r| r.within)
    }
}

/// Per-order work of a flow run against a baseline run, count by count.
pub fn compare(flow: &Work, baseline: &Work, tolerance_pct: f64) -> Comparison {
    let rows = flow
        .named()
        .into_iter()
        .zip(baseline.named())
        .map(|((what, f), (_, b))| {
            let diff_pct = if f == 0.0 {
                if b == 0.0 { 0.0 } else { f64::INFINITY }
            } else {
                (b - f) / f * 100.0
            };
            CompareRow {
                what: what.into(),
                flow: f,
                baseline: b,
                diff_pct,
                within: diff_pct.abs() <= tolerance_pct,
            }
        })
        .collect();
    Comparison {
        tolerance_pct,
        rows,
    }
}

/// One process from `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    pub ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks: children it has reaped count, so a
    /// Postgres backend that exits during the run still counts (in the postmaster).
    pub ticks: u64,
}

pub fn parse_stat(pid: u32, text: &str) -> Option<ProcStat> {
    // The command name is in parentheses and may hold spaces or parentheses itself.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    let ticks = [n(11)?, n(12)?, n(13)?, n(14)?]
        .iter()
        .map(|t| u64::try_from(*t).unwrap_or(0))
        .sum();
    Some(ProcStat {
        pid,
        comm,
        ppid: u32::try_from(n(1)?).ok()?,
        ticks,
    })
}

/// A set of processes whose CPU the report adds up.
#[derive(Debug, Clone, PartialEq)]
pub enum Group {
    /// One process (the runner, the bench itself).
    Pid(u32),
    /// Every process with this command name.
    Comm(&'static str),
    /// Every process with this command name and all their descendants.
    Tree(&'static str),
}

pub fn members(procs: &[ProcStat], group: &Group) -> Vec<u32> {
    match group {
        Group::Pid(p) => procs
            .iter()
            .filter(|s| s.pid == *p)
            .map(|s| s.pid)
            .collect(),
        Group::Comm(c) => procs
            .iter()
            .filter(|s| s.comm == *c)
            .map(|s| s.pid)
            .collect(),
        Group::Tree(c) => {
            let mut found: Vec<u32> = procs
                .iter()
                .filter(|s| s.comm == *c)
                .map(|s| s.pid)
                .collect();
            let mut i = 0;
            while i < found.len() {
                let parent = found[i];
                for s in procs.iter().filter(|s| s.ppid == parent) {
                    if !found.contains(&s.pid) {
                        found.push(s.pid);
                    }
                }
                i += 1;
            }
            found
        }
    }
}

/// Clock ticks the group used between two snapshots: per process present at the end, what
/// it used since the first snapshot (all of it for a process born in between).
pub fn group_ticks(before: &[ProcStat], after: &[ProcStat], group: &Group) -> u64 {
    members(after, group)
        .into_iter()
        .filter_map(|pid| after.iter().find(|s| s.pid == pid))
        .map(|a| {
            let earlier = before
                .iter()
                .find(|b| b.pid == a.pid && b.comm == a.comm)
                .map_or(0, |b| b.ticks);
            a.ticks.saturating_sub(earlier)
        })
        .sum()
}

/// What the baseline checks of itself (it has no business invariants): every accepted
/// order decided, every outbox row published, nothing dead-lettered.
pub fn baseline_violations(accepted: u64, finals: u64, unpublished: i64, dead: u64) -> Vec<String> {
    let mut v = Vec::new();
    if finals < accepted {
        v.push(format!(
            "{} accepted orders never became final",
            accepted - finals
        ));
    }
    if unpublished > 0 {
        v.push(format!("{unpublished} outbox rows left unpublished"));
    }
    if dead > 0 {
        v.push(format!("{dead} messages in dead-letter queues"));
    }
    v
}

/// Sums a counter of the Prometheus text format over the series whose labels contain every
/// `label="value"` of `having`.
pub fn prom_sum(text: &str, metric: &str, having: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = name == metric
                && having
                    .iter()
                    .all(|(k, v)| labels.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// An accepted order that expired is one the front door should have refused: admission
/// control exists so that overload costs refusals (503) and latency, never a 202 followed by
/// a cancellation.
pub fn expired_violation(outcomes: &std::collections::BTreeMap<String, u64>) -> Option<String> {
    let n = outcomes.get("CANCELLED expired").copied().unwrap_or(0);
    (n > 0).then(|| {
        format!("{n} accepted order(s) expired before a decision (admission control let them in)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scheduled: Option<f64>, first: f64, final_seen: Option<f64>) -> OrderRecord {
        OrderRecord {
            scheduled,
            first_send: first,
            accepted: Some(first + 0.01),
            final_seen,
            ..Default::default()
        }
    }

    #[test]
    fn percentiles_are_observed_values_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&v);
        assert_eq!(
            (l.p50, l.p95, l.p99, l.max, l.count),
            (50.0, 95.0, 99.0, 100.0, 100)
        );
        assert_eq!(Latency::of(&[7.0]).p99, 7.0);
        assert_eq!(Latency::of(&[]), Latency::default());
        let l = Latency::of(&[3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((l.count, l.p50, l.max), (3, 2.0, 3.0));
    }

    #[test]
    fn open_loop_latency_counts_from_the_schedule_not_from_the_late_send() {
        // Meant for t=1.0, sent at 1.5 because the client was stuck, final at 1.6.
        let r = record(Some(1.0), 1.5, Some(1.6));
        assert!((r.client_latency_ms().unwrap_or_default() - 600.0).abs() < 1e-6);
        assert!((r.send_lag_ms().unwrap_or_default() - 500.0).abs() < 1e-6);
        // The closed loop has no schedule: from the first attempt.
        let c = record(None, 1.5, Some(1.6));
        assert!((c.client_latency_ms().unwrap_or_default() - 100.0).abs() < 1e-6);
        assert_eq!(c.send_lag_ms(), None);
    }

    #[test]
    fn the_window_ends_at_the_last_final_order_and_every_rate_uses_it() {
        let rs = vec![
            record(Some(0.0), 0.0, Some(1.0)),
            record(Some(0.5), 0.5, Some(4.0)),
        ];
        let w = window(&rs, 99.0);
        assert!(w.complete);
        assert_eq!(w.secs, 4.0);
        let r = rates(&w, 2, 2, 40);
        assert_eq!(
            (
                r.orders_final_per_sec,
                r.orders_accepted_per_sec,
                r.messages_per_sec
            ),
            (0.5, 0.5, 10.0)
        );
    }

    #[test]
    fn a_run_that_gave_up_says_so_and_ends_its_window_there() {
        let rs = vec![
            record(Some(0.0), 0.0, Some(1.0)),
            record(Some(0.5), 0.5, None),
        ];
        let w = window(&rs, 30.0);
        assert!(!w.complete);
        assert_eq!(w.secs, 30.0);
    }

    #[test]
    fn a_rate_beyond_capacity_drains_slower_than_offered_however_short_the_step() {
        // Offered at 100/s (one every 10 ms); kept up with: finals 10 ms apart, 1 s late.
        let kept: Vec<OrderRecord> = (0..50)
            .map(|i| {
                record(
                    Some(i as f64 * 0.01),
                    i as f64 * 0.01,
                    Some(1.0 + i as f64 * 0.01),
                )
            })
            .collect();
        let r = drain_rate(&kept).unwrap_or_default();
        assert!((r - 100.0).abs() < 1e-6, "{r}");
        // Same offer, capacity 60/s: finals ~16.7 ms apart.
        let behind: Vec<OrderRecord> = (0..50)
            .map(|i| {
                record(
                    Some(i as f64 * 0.01),
                    i as f64 * 0.01,
                    Some(0.1 + i as f64 / 60.0),
                )
            })
            .collect();
        assert!(drain_rate(&behind).unwrap_or_default() < SUSTAINED_SHARE * 100.0);
        assert_eq!(drain_rate(&kept[..1]), None);
    }

    #[test]
    fn retries_are_counted_by_status_with_their_time() {
        let mut a = record(None, 0.0, Some(1.0));
        a.retried = vec!["503".into(), "503".into(), "transport".into()];
        a.retry_secs = 0.7;
        let mut b = record(None, 0.0, None);
        b.retried = vec!["500".into()];
        b.retry_secs = 0.1;
        b.error = Some("422".into());
        let r = retries(&[a, b, record(None, 0.0, Some(1.0))]);
        assert!(r.happened());
        assert_eq!(r.orders_retried, 2);
        assert_eq!(r.retried_by_status["503"], 2);
        assert_eq!(r.retried_by_status["transport"], 1);
        assert!((r.retry_secs_total - 0.8).abs() < 1e-9);
        assert_eq!(r.retry_secs_max, 0.7);
        assert_eq!(r.errors(), 1);
        assert!(!retries(&[record(None, 0.0, Some(1.0))]).happened());
    }

    fn work(d: f64, p: f64, c: f64) -> Work {
        Work {
            deliveries: d,
            publishes: p,
            commits: c,
            inbox_rows: d,
            outbox_rows: p,
            batches: c / 2.0,
        }
    }

    #[test]
    fn a_baseline_doing_the_same_work_is_like_for_like() {
        let flow = work(4215.0, 2100.0, 3000.0).per_order(300);
        assert!((flow.deliveries - 14.05).abs() < 1e-9);
        let base = work(4215.0, 2100.0, 3090.0).per_order(300);
        let c = compare(&flow, &base, LIKE_FOR_LIKE_TOLERANCE_PCT);
        assert!(c.like_for_like(), "{c:?}");
        assert!((c.rows[2].diff_pct - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_baseline_doing_half_the_work_is_flagged() {
        // The old baseline: 7 deliveries and 4 publishes per order against 14 and 7.
        let flow = work(14.0, 7.0, 10.0);
        let old = work(7.0, 4.0, 10.0);
        let c = compare(&flow, &old, LIKE_FOR_LIKE_TOLERANCE_PCT);
        assert!(!c.like_for_like());
        let flagged: Vec<&str> = c
            .rows
            .iter()
            .filter(|r| !r.within)
            .map(|r| r.what.as_str())
            .collect();
        assert_eq!(
            flagged,
            [
                "deliveries",
                "confirmed publishes",
                "inbox rows",
                "outbox rows"
            ]
        );
        assert!((c.rows[0].diff_pct + 50.0).abs() < 1e-9);
        // A faster baseline batches less and so commits more: flagged too.
        let c = compare(&flow, &work(14.0, 7.0, 12.0), LIKE_FOR_LIKE_TOLERANCE_PCT);
        let flagged: Vec<&str> = c
            .rows
            .iter()
            .filter(|r| !r.within)
            .map(|r| r.what.as_str())
            .collect();
        assert_eq!(flagged, ["commits", "batches"]);
        // Work where the flow did none is never like for like.
        let c = compare(&work(0.0, 7.0, 1.0), &work(1.0, 7.0, 1.0), 5.0);
        assert!(!c.rows[0].within);
    }

    #[test]
    fn proc_stat_lines_parse_with_odd_command_names() {
        let line =
            "2967 (beam.smp) S 1 2967 2967 0 -1 4194560 1 0 0 0 1200 300 7 3 20 0 30 0 1 1 1";
        let s = parse_stat(2967, line).expect("parses");
        assert_eq!((s.comm.as_str(), s.ppid, s.ticks), ("beam.smp", 1, 1510));
        let odd = "42 (a (b) c) R 7 0 0 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(
            parse_stat(42, odd).map(|s| (s.comm, s.ticks)),
            Some(("a (b) c".into(), 10))
        );
        assert_eq!(parse_stat(1, "garbage"), None);
    }

    fn p(pid: u32, comm: &str, ppid: u32, ticks: u64) -> ProcStat {
        ProcStat {
            pid,
            comm: comm.into(),
            ppid,
            ticks,
        }
    }

    #[test]
    fn groups_add_their_members_deltas_including_processes_born_in_between() {
        let before = vec![
            p(10, "beam.smp", 1, 100),
            p(11, "erl_child_setup", 10, 5),
            p(20, "postgres", 1, 50),
        ];
        let after = vec![
            p(10, "beam.smp", 1, 160),
            p(11, "erl_child_setup", 10, 6),
            p(12, "inet_gethost", 11, 2),
            p(20, "postgres", 1, 70),
            p(21, "postgres", 20, 30),
            p(30, "redis-server", 1, 9),
        ];
        assert_eq!(
            group_ticks(&before, &after, &Group::Tree("beam.smp")),
            60 + 1 + 2
        );
        assert_eq!(
            group_ticks(&before, &after, &Group::Comm("postgres")),
            20 + 30
        );
        assert_eq!(group_ticks(&before, &after, &Group::Pid(30)), 9);
        assert_eq!(group_ticks(&before, &after, &Group::Comm("nothing")), 0);
    }

    #[test]
    fn the_baseline_fails_on_undecided_orders_lost_events_and_dead_letters() {
        assert!(baseline_violations(300, 300, 0, 0).is_empty());
        assert_eq!(
            baseline_violations(300, 298, 0, 0),
            ["2 accepted orders never became final"]
        );
        assert_eq!(baseline_violations(300, 300, 3, 1).len(), 2);
    }

    #[test]
    fn prometheus_counters_are_summed_over_matching_series() {
        let text = "# HELP orderflow_messages_total Messages\n\
            orderflow_messages_total{function=\"a\",outcome=\"processed\"} 10\n\
            orderflow_messages_total{function=\"b\",outcome=\"processed\"} 5\n\
            orderflow_messages_total{function=\"b\",outcome=\"failed\"} 2\n\
            orderflow_messages_total_other 99\n\
            orderflow_events_published_total{routing_key=\"order.created\"} 3\n";
        assert_eq!(prom_sum(text, "orderflow_messages_total", &[]), 17.0);
        assert_eq!(
            prom_sum(
                text,
                "orderflow_messages_total",
                &[("outcome", "processed")]
            ),
            15.0
        );
        assert_eq!(prom_sum(text, "orderflow_events_published_total", &[]), 3.0);
        assert_eq!(prom_sum(text, "missing", &[]), 0.0);
    }

    #[test]
    fn an_expired_order_is_a_violation_and_other_outcomes_are_not() {
        let mut outcomes = std::collections::BTreeMap::from([
            ("CONFIRMED".to_string(), 90),
            ("CANCELLED out_of_stock".to_string(), 10),
        ]);
        assert_eq!(expired_violation(&outcomes), None);
        outcomes.insert("CANCELLED expired".into(), 2);
        let v = expired_violation(&outcomes).expect("a violation");
        assert!(v.starts_with("2 accepted order(s) expired"), "{v}");
    }
}
