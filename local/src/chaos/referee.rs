//! The chaos suite's verdicts on its own faults, as pure functions of what it observed:
//! every fault kind it announced must have fired, and the SIGKILL must have hit the runner
//! with a batch in flight (taken by a trigger and unacknowledged at the broker). A suite
//! that announces a fault it never injected proves nothing about that fault, so it fails.

use serde_json::Value;
use shared::faults::{Fault, Faults};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The faults injected from outside the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum External {
    /// Every broker connection closed.
    Broker,
    /// Redis shut down (no save) and started again.
    Redis,
    /// The run's Postgres backends terminated.
    Postgres,
    /// The runner SIGKILLed with a batch in flight, then started again.
    Kill,
}

impl External {
    pub const ALL: [External; 4] = [
        External::Broker,
        External::Redis,
        External::Postgres,
        External::Kill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            External::Broker => "broker",
            External::Redis => "redis",
            External::Postgres => "postgres",
            External::Kill => "kill",
        }
    }

    /// What counts as this fault having fired.
    fn evidence(self) -> &'static str {
        match self {
            External::Broker => "no trigger of the runner lost its broker connection",
            External::Redis => "Redis answered with the same run_id after the restart",
            External::Postgres => "no backend of the run's database was terminated",
            External::Kill => "the runner did not die by SIGKILL",
        }
    }
}

/// A fault kind the suite announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Fired inside the runner, by `ORDERFLOW_FAULTS`.
    InProcess(Fault),
    External(External),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::InProcess(k) => write!(f, "{}", k.name()),
            Kind::External(k) => write!(f, "{}", k.name()),
        }
    }
}

/// The kinds a run announces: those `ORDERFLOW_FAULTS` gives a positive rate, and every
/// external fault not skipped.
pub fn announced(faults: &Faults, skip: &[External]) -> Vec<Kind> {
    let inside = faults.kinds().into_iter().map(Kind::InProcess);
    let outside = External::ALL
        .into_iter()
        .filter(|e| !skip.contains(e))
        .map(Kind::External);
    inside.chain(outside).collect()
}

/// One violation per announced kind observed zero times.
pub fn unfired(announced: &[Kind], observed: &BTreeMap<Kind, usize>) -> Vec<String> {
    announced
        .iter()
        .filter(|k| observed.get(k).copied().unwrap_or(0) == 0)
        .map(|k| match k {
            Kind::InProcess(_) => format!(
                "fault `{k}` was announced (ORDERFLOW_FAULTS) but never fired: the runner logged no injection of it"
            ),
            Kind::External(e) => format!(
                "fault `{k}` was announced but never fired: {}",
                e.evidence()
            ),
        })
        .collect()
}

/// `kind count` for every announced kind, for the summary line.
pub fn fired_summary(announced: &[Kind], observed: &BTreeMap<Kind, usize>) -> String {
    announced
        .iter()
        .map(|k| format!("{k} {}", observed.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the suite saw at its last look before it SIGKILLed the runner. Both sides are read
/// while the runner is stopped (SIGSTOP), so both still hold when the SIGKILL lands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillEvidence {
    /// Per queue, the deliveries to the runner the broker counted unacknowledged.
    pub held: BTreeMap<String, u64>,
    /// Per queue, the messages of the batch the runner's trigger had taken and not settled,
    /// by its own log. Deliveries the broker pushed into the stopped process are unacked
    /// too, but only a taken batch is one the function was working on.
    pub batches: BTreeMap<String, u64>,
    /// How many times the runner was stopped and looked at.
    pub looks: usize,
    /// Why a look could not read the broker, if one could not.
    pub errors: Vec<String>,
}

impl KillEvidence {
    /// Queues where both sides agree, with (batch size, unacknowledged count).
    pub fn in_flight(&self) -> BTreeMap<String, (u64, u64)> {
        self.batches
            .iter()
            .filter(|(_, n)| **n > 0)
            .filter_map(|(q, n)| {
                let unacked = self.held.get(q).copied().filter(|u| *u > 0)?;
                Some((q.clone(), (*n, unacked)))
            })
            .collect()
    }
}

/// The kill's verdict: a violation unless a batch was provably in flight.
pub fn kill_verdict(e: &KillEvidence) -> Vec<String> {
    if !e.in_flight().is_empty() {
        return Vec::new();
    }
    let mut why = format!(
        "not provably in flight: in {} look(s) with the runner stopped, no queue had both a batch taken by its trigger and deliveries unacknowledged at the broker",
        e.looks
    );
    if let Some(err) = e.errors.last() {
        why.push_str(&format!(" (last error: {err})"));
    }
    vec![why]
}

/// Unacknowledged deliveries per queue of `queues`, from `rabbitmqctl list_consumers
/// queue_name channel_pid` and `rabbitmqctl list_channels pid messages_unacknowledged`
/// (both `--formatter json`). The channel's figure is the broker's live count, unlike the
/// management API's queue statistics, which for a quorum queue lag by several seconds.
/// Each trigger consumes one queue on its own channel, so a channel's count is its queue's.
pub fn unacked_by_queue(
    consumers: &str,
    channels: &str,
    queues: &BTreeSet<String>,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let consumers: Vec<Value> = serde_json::from_str(consumers)
        .map_err(|e| anyhow::anyhow!("rabbitmqctl list_consumers: {e}"))?;
    let channels: Vec<Value> = serde_json::from_str(channels)
        .map_err(|e| anyhow::anyhow!("rabbitmqctl list_channels: {e}"))?;
    let unacked: BTreeMap<&str, u64> = channels
        .iter()
        .filter_map(|c| Some((c["pid"].as_str()?, c["messages_unacknowledged"].as_u64()?)))
        .collect();
    let mut held = BTreeMap::new();
    for c in &consumers {
        let (Some(queue), Some(pid)) = (c["queue_name"].as_str(), c["channel_pid"].as_str()) else {
            continue;
        };
        if let Some(n) = unacked.get(pid).filter(|n| **n > 0)
            && queues.contains(queue)
        {
            *held.entry(queue.to_string()).or_default() += n;
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything_announced() -> Vec<Kind> {
        let faults = Faults::parse("error=0.03,crash=0.02,slow=0.03,slow_ms=100,duplicate=0.05")
            .expect("parses");
        announced(&faults, &[])
    }

    fn all_fired() -> BTreeMap<Kind, usize> {
        everything_announced().into_iter().map(|k| (k, 3)).collect()
    }

    #[test]
    fn every_kind_fired_is_a_clean_verdict() {
        assert_eq!(everything_announced().len(), 8);
        assert_eq!(
            unfired(&everything_announced(), &all_fired()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_announced_kind_that_never_fired_fails_the_run_by_name() {
        let mut observed = all_fired();
        observed.insert(Kind::InProcess(Fault::Crash), 0);
        observed.remove(&Kind::External(External::Redis));
        let v = unfired(&everything_announced(), &observed);
        assert_eq!(v.len(), 2, "{v:#?}");
        assert!(v[0].starts_with("fault `crash` was announced (ORDERFLOW_FAULTS) but never fired"));
        assert!(v[1].starts_with("fault `redis` was announced but never fired: Redis answered"));
    }

    #[test]
    fn skipped_and_zero_rate_kinds_are_not_announced_so_not_required() {
        let faults = Faults::parse("error=0.1,crash=0,slow_ms=100").expect("parses");
        let kinds = announced(&faults, &[External::Redis, External::Kill]);
        assert_eq!(
            kinds,
            vec![
                Kind::InProcess(Fault::Error),
                Kind::External(External::Broker),
                Kind::External(External::Postgres),
            ]
        );
        let observed = kinds.iter().map(|k| (*k, 1)).collect();
        assert!(unfired(&kinds, &observed).is_empty());
        assert_eq!(
            fired_summary(&kinds, &observed),
            "error 1, broker 1, postgres 1"
        );
    }

    #[test]
    fn a_kill_is_in_flight_only_when_runner_and_broker_agree_on_a_queue() {
        let seen = KillEvidence {
            held: [
                ("run.order-saga".to_string(), 2),
                ("run.order-timeline".into(), 1),
            ]
            .into(),
            batches: [
                ("run.order-saga".to_string(), 2),
                ("run.payment-settle".into(), 1),
            ]
            .into(),
            looks: 1,
            errors: vec![],
        };
        assert_eq!(
            seen.in_flight(),
            [("run.order-saga".to_string(), (2, 2))].into()
        );
        assert!(kill_verdict(&seen).is_empty());
        // Deliveries pushed into a stopped runner whose trigger was idle prove nothing.
        let pushed = KillEvidence {
            held: [("run.order-timeline".to_string(), 1)].into(),
            batches: BTreeMap::new(),
            looks: 3,
            errors: vec![],
        };
        assert_eq!(kill_verdict(&pushed).len(), 1);
        let blind = KillEvidence {
            held: BTreeMap::new(),
            batches: [("run.order-saga".to_string(), 2)].into(),
            looks: 12,
            errors: vec!["rabbitmqctl timed out".into()],
        };
        let v = kill_verdict(&blind);
        assert_eq!(v.len(), 1);
        assert!(v[0].starts_with("not provably in flight: in 12 look(s)"));
        assert!(v[0].contains("rabbitmqctl timed out"));
    }

    #[test]
    fn unacknowledged_deliveries_are_joined_to_this_runs_queues_by_channel() {
        let consumers = r##"[
            {"queue_name":"run.order-saga","channel_pid":"#PID<1.1.0>"},
            {"queue_name":"run.payment-process","channel_pid":"#PID<1.2.0>"},
            {"queue_name":"other.order-saga","channel_pid":"#PID<1.3.0>"}
        ]"##;
        let channels = r##"[
            {"pid":"#PID<1.1.0>","messages_unacknowledged":3},
            {"pid":"#PID<1.2.0>","messages_unacknowledged":0},
            {"pid":"#PID<1.3.0>","messages_unacknowledged":7},
            {"pid":"#PID<1.4.0>","messages_unacknowledged":1}
        ]"##;
        let queues: BTreeSet<String> =
            ["run.order-saga".to_string(), "run.payment-process".into()].into();
        let held = unacked_by_queue(consumers, channels, &queues).expect("parses");
        assert_eq!(held, [("run.order-saga".to_string(), 3)].into());
        assert!(unacked_by_queue("Error: node down", channels, &queues).is_err());
    }
}
