//! Admission control for `POST /orders`: the front door never accepts work it cannot finish
//! before the order deadline. When the backlog of undecided (PENDING) orders, drained at the
//! rate measured over the last seconds, would take longer than a share of the deadline to
//! decide, a new order is refused with 503 and `Retry-After`, and nothing is created.
//! Overload then costs refusals and latency, never orders cancelled as `expired` after the
//! customer was told 202.
//!
//! The figures come from Postgres (one query, cached for a second per instance), so every
//! instance of `order-create`, locally or on Lambda, judges the same system-wide backlog.

use shared::config::Admission;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The backlog and how fast it drained over the measuring window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    pub pending: i64,
    pub decided_in_window: i64,
    pub window: Duration,
    /// How long the oldest undecided order has waited (zero when none waits).
    pub oldest_wait: Duration,
}

impl Backlog {
    /// Orders decided per second over the window.
    pub fn drain_rate(&self) -> f64 {
        self.decided_in_window as f64 / self.window.as_secs_f64()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admit,
    /// Refuse; the client may retry after this many seconds.
    Refuse {
        retry_after_secs: u64,
    },
}

/// The pure rule: admit while the backlog drains within `headroom` of the deadline at the
/// measured rate (or is small enough that no rate is needed yet).
pub fn decide(b: &Backlog, cfg: &Admission, deadline: Duration) -> Decision {
    if !cfg.enabled || b.pending < cfg.min_backlog || b.oldest_wait < cfg.min_wait {
        return Decision::Admit;
    }
    let budget = deadline.as_secs_f64() * cfg.headroom;
    let rate = b.drain_rate();
    if rate > 0.0 && (b.pending as f64) / rate <= budget {
        return Decision::Admit;
    }
    // When enough of the backlog will have drained for the next order to fit.
    let retry_after_secs = if rate > 0.0 {
        let excess = b.pending as f64 - rate * budget;
        (excess / rate).ceil().clamp(1.0, 60.0) as u64
    } else {
        // Nothing decided lately: the consumers are stalled or just starting.
        5
    };
    Decision::Refuse { retry_after_secs }
}

/// The backlog as Postgres sees it, refreshed at most once a second.
pub struct AdmissionControl {
    pool: PgPool,
    cfg: Admission,
    deadline: Duration,
    cached: Mutex<Option<(Instant, Backlog)>>,
}

impl AdmissionControl {
    pub fn new(pool: PgPool, cfg: Admission, deadline: Duration) -> Self {
        AdmissionControl {
            pool,
            cfg,
            deadline,
            cached: Mutex::new(None),
        }
    }

    pub async fn check(&self) -> sqlx::Result<Decision> {
        if !self.cfg.enabled {
            return Ok(Decision::Admit);
        }
        let mut cached = self.cached.lock().await;
        let backlog = match *cached {
            Some((at, b)) if at.elapsed() < self.cfg.refresh => b,
            _ => {
                let b = read(&self.pool, self.cfg.window).await?;
                *cached = Some((Instant::now(), b));
                b
            }
        };
        Ok(decide(&backlog, &self.cfg, self.deadline))
    }
}

async fn read(pool: &PgPool, window: Duration) -> sqlx::Result<Backlog> {
    let (pending, decided, oldest): (i64, i64, f64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders.orders WHERE status = 'PENDING'),
                (SELECT count(*) FROM orders.orders
                  WHERE finalized_at > now() - make_interval(secs => $1)),
                coalesce((SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8
                  FROM orders.orders WHERE status = 'PENDING'), 0)",
    )
    .bind(window.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        pending,
        decided_in_window: decided,
        window,
        oldest_wait: Duration::try_from_secs_f64(oldest.max(0.0)).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Admission {
        Admission {
            enabled: true,
            headroom: 0.5,
            min_backlog: 100,
            window: Duration::from_secs(10),
            refresh: Duration::from_secs(1),
            min_wait: Duration::from_secs(5),
        }
    }

    /// A backlog whose oldest order has waited a minute: the system is not keeping up.
    fn backlog(pending: i64, decided_in_10s: i64) -> Backlog {
        Backlog {
            pending,
            decided_in_window: decided_in_10s,
            window: Duration::from_secs(10),
            oldest_wait: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_burst_after_a_lull_is_admitted_while_its_oldest_order_is_young() {
        // 512 clients back at once after an idle spell: the last 10 s decided only 20, so the
        // rate alone says 256 s of backlog; but the oldest waits 1 s, and is decided soon.
        let burst = Backlog {
            oldest_wait: Duration::from_secs(1),
            ..backlog(512, 20)
        };
        assert_eq!(decide(&burst, &cfg(), DEADLINE), Decision::Admit);
        // The same backlog once its oldest order has aged past the floor is refused.
        let aged = Backlog {
            oldest_wait: Duration::from_secs(5),
            ..burst
        };
        assert!(matches!(
            decide(&aged, &cfg(), DEADLINE),
            Decision::Refuse { .. }
        ));
    }

    const DEADLINE: Duration = Duration::from_secs(300);

    #[test]
    fn a_backlog_that_drains_within_half_the_deadline_is_admitted() {
        // 200/s for 150 s drains 30 000.
        assert_eq!(
            decide(&backlog(30_000, 2_000), &cfg(), DEADLINE),
            Decision::Admit
        );
    }

    #[test]
    fn a_backlog_that_would_outlive_the_budget_is_refused_until_enough_drains() {
        // 200/s: 31 000 is 1 000 too many, 5 s of draining.
        assert_eq!(
            decide(&backlog(31_000, 2_000), &cfg(), DEADLINE),
            Decision::Refuse {
                retry_after_secs: 5
            }
        );
    }

    #[test]
    fn a_stalled_system_refuses_once_past_the_small_backlog_floor() {
        assert_eq!(decide(&backlog(99, 0), &cfg(), DEADLINE), Decision::Admit);
        assert_eq!(
            decide(&backlog(100, 0), &cfg(), DEADLINE),
            Decision::Refuse {
                retry_after_secs: 5
            }
        );
    }

    #[test]
    fn retry_after_is_bounded_to_a_minute() {
        assert_eq!(
            decide(&backlog(1_000_000, 10), &cfg(), DEADLINE),
            Decision::Refuse {
                retry_after_secs: 60
            }
        );
    }

    #[test]
    fn switched_off_it_admits_everything() {
        let off = Admission {
            enabled: false,
            ..cfg()
        };
        assert_eq!(
            decide(&backlog(1_000_000, 0), &off, DEADLINE),
            Decision::Admit
        );
    }
}
