//! `orderflow verify`: the invariants of DESIGN.md section 2, one line each. A thin shell:
//! `snapshot` reads the state once, `checks` judges it with pure functions.

pub mod checks;
pub mod snapshot;

use shared::context::Context;
pub use snapshot::Snapshot;

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub violations: Vec<String>,
    pub summary: String,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn line(&self) -> String {
        let mark = if self.ok() { "ok  " } else { "FAIL" };
        let mut s = format!("{mark} {}: {}", self.name, self.summary);
        for v in self.violations.iter().take(10) {
            s.push_str(&format!("\n       - {v}"));
        }
        if self.violations.len() > 10 {
            s.push_str(&format!(
                "\n       ... and {} more",
                self.violations.len() - 10
            ));
        }
        s
    }
}

/// What the run that is being verified did on purpose.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    /// Invalid input was sent, so parked messages (each with its reason) are expected.
    pub invalid_input: bool,
}

/// Reads the state and runs every check; `queues` are the template's queue names
/// (unprefixed).
pub async fn run(ctx: &Context, queues: &[String], expect: &Expect) -> anyhow::Result<Vec<Check>> {
    let snapshot = snapshot::read(ctx, queues).await?;
    Ok(checks::all(&snapshot, expect))
}

/// Messages ready or in flight in every function queue, plus unpublished outbox rows: zero
/// means nothing moves (see `crate::broker::settled` for waiting on it).
pub async fn backlog(ctx: &Context, queues: &[String]) -> anyhow::Result<usize> {
    Ok(crate::broker::busy(ctx, queues).await? as usize)
}
