//! Fault injection, switched on by configuration and off by default: what the reliability
//! suite uses to prove that errors, crashes, slowness and duplicates lose nothing.
//!
//! `ORDERFLOW_FAULTS` is a comma-separated list of `kind[@function]=value`:
//! - `error=0.05` (or `error@inventory-reserve=0.2`): a transient handler error per message
//!   (per chunk for a handler that applies a chunk at once);
//! - `crash=0.02`: a crash between commit and publish (events stay in the outbox, the
//!   invocation fails), also for HTTP handlers that commit then publish;
//! - `slow=0.1`, `slow_ms=200`: a slow handler (per message, or per set-based chunk);
//! - `duplicate=0.1`: the bridge delivers a batch twice.
//!   A function-specific value wins over the general one.

use rand::Rng as _;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Error,
    Crash,
    Slow,
    Duplicate,
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::Error, Fault::Crash, Fault::Slow, Fault::Duplicate];

    /// The name `ORDERFLOW_FAULTS` and the "fault injected" log line use.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Error => "error",
            Fault::Crash => "crash",
            Fault::Slow => "slow",
            Fault::Duplicate => "duplicate",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "error" => Fault::Error,
            "crash" => Fault::Crash,
            "slow" => Fault::Slow,
            "duplicate" => Fault::Duplicate,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    rates: BTreeMap<(Fault, Option<String>), f64>,
    slow: Duration,
}

impl Faults {
    pub fn none() -> Self {
        Faults::default()
    }

    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut f = Faults {
            rates: BTreeMap::new(),
            slow: Duration::from_millis(200),
        };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected kind=value"))?;
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{item:?}: value is not a number"))?;
            let (kind, function) = match key.trim().split_once('@') {
                Some((k, f)) => (k, Some(f.to_string())),
                None => (key.trim(), None),
            };
            if kind == "slow_ms" {
                f.slow = Duration::from_millis(value.max(0.0) as u64);
                continue;
            }
            let fault = Fault::from_name(kind).ok_or_else(|| {
                format!("{item:?}: unknown fault {kind:?} (error, crash, slow, duplicate, slow_ms)")
            })?;
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("{item:?}: a rate is between 0 and 1"));
            }
            f.rates.insert((fault, function), value);
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.rates.values().all(|r| *r == 0.0)
    }

    /// The kinds that can fire somewhere: a positive rate, general or for one function.
    pub fn kinds(&self) -> BTreeSet<Fault> {
        self.rates
            .iter()
            .filter(|(_, rate)| **rate > 0.0)
            .map(|((fault, _), _)| *fault)
            .collect()
    }

    /// The rate of `fault` for `function` (its own setting, else the general one).
    pub fn rate(&self, fault: Fault, function: &str) -> f64 {
        self.rates
            .get(&(fault, Some(function.to_string())))
            .or_else(|| self.rates.get(&(fault, None)))
            .copied()
            .unwrap_or(0.0)
    }

    /// Rolls the dice for one occurrence.
    pub fn fires(&self, fault: Fault, function: &str) -> bool {
        let rate = self.rate(fault, function);
        let fired = rate > 0.0 && rand::rng().random_bool(rate.min(1.0));
        if fired {
            // The chaos suite counts these lines to prove each announced kind fired.
            tracing::warn!(fault = fault.name(), function, "fault injected");
        }
        fired
    }

    pub fn slow_for(&self) -> Duration {
        self.slow
    }
}

/// The error an injected fault raises (transient: the batch comes back).
#[derive(Debug, thiserror::Error)]
#[error("injected fault: {0:?}")]
pub struct Injected(pub Fault);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_specific_rate_wins_over_the_general_one() {
        let f = Faults::parse("error=0.1, error@order-saga=0.5, slow_ms=50, duplicate=1")
            .expect("parses");
        assert_eq!(f.rate(Fault::Error, "inventory-reserve"), 0.1);
        assert_eq!(f.rate(Fault::Error, "order-saga"), 0.5);
        assert_eq!(f.rate(Fault::Crash, "order-saga"), 0.0);
        assert_eq!(f.slow_for(), Duration::from_millis(50));
        assert!(f.fires(Fault::Duplicate, "x"));
        assert!(!f.fires(Fault::Crash, "x"));
    }

    #[test]
    fn the_kinds_are_those_with_a_positive_rate_anywhere() {
        let f =
            Faults::parse("error=0.1, crash=0, slow@order-saga=0.2, slow_ms=50").expect("parses");
        assert_eq!(f.kinds(), [Fault::Error, Fault::Slow].into());
        for k in Fault::ALL {
            assert_eq!(Fault::from_name(k.name()), Some(k));
        }
    }

    #[test]
    fn off_by_default_and_bad_specs_are_refused() {
        assert!(Faults::parse("").expect("empty").is_empty());
        assert!(Faults::parse("error=2").is_err());
        assert!(Faults::parse("explode=0.1").is_err());
        assert!(Faults::parse("error").is_err());
    }
}
