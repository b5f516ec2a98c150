//! Rate limits in Redis: GCRA (the generic cell rate algorithm, a token bucket kept as one
//! timestamp per key), checked and recorded by one Lua script call, so concurrent
//! functions in any number of execution environments share one budget and a check can never
//! half-apply. Keys live under the stack's prefix (`<prefix>ratelimit:<rule>:<sha256>`);
//! subjects (e-mail, address, user) are hashed so no PII shows in key names.
//!
//! GCRA in one paragraph: a limit of `count` per `period` lets a request through every
//! `interval = period / count` on average, with a burst of `count`. Each key stores its
//! theoretical arrival time (TAT). A request at `now` moves it to
//! `max(TAT, now) + interval`; it is allowed while that stays within `period` of `now`,
//! and otherwise waits until it does (the `Retry-After`).

use crate::cache::Redis;
use crate::topology::Names;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::time::Duration;

/// `count` requests per `period`, all of them possibly at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub period: Duration,
}

impl Limit {
    pub const fn new(count: u32, period: Duration) -> Self {
        Limit { count, period }
    }

    /// The time one request uses of the budget, in ms (at least 1).
    pub fn interval_ms(&self) -> i64 {
        (self.period.as_millis() as i64 / i64::from(self.count.max(1))).max(1)
    }

    /// The window a burst fits in: `count` intervals (the period, rounded to whole ms).
    pub fn period_ms(&self) -> i64 {
        self.interval_ms() * i64::from(self.count.max(1))
    }

    /// `N/PERIOD` with PERIOD a number of seconds or a number followed by `s`, `m` or `h`
    /// (`10/15m`, `30/60`, `20/1h`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (n, p) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| "expected COUNT/PERIOD, e.g. 10/15m, or off".to_string())?;
        let count: u32 = n.trim().parse().map_err(|e| format!("count {n:?}: {e}"))?;
        if count == 0 {
            return Err("count must be at least 1 (use off to turn a limit off)".into());
        }
        let p = p.trim();
        let (digits, unit) = match p.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&p[..i], c),
            _ => (p, 's'),
        };
        let secs: u64 = digits.parse().map_err(|e| format!("period {p:?}: {e}"))?;
        let secs = match unit {
            's' => secs,
            'm' => secs * 60,
            'h' => secs * 3600,
            other => return Err(format!("period unit {other:?}: use s, m or h")),
        };
        if secs == 0 {
            return Err("period must be positive".into());
        }
        Ok(Limit::new(count, Duration::from_secs(secs)))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.count, self.period.as_secs())
    }
}

/// What is limited, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Failed logins per e-mail address (a successful login gives its attempt back).
    LoginPerEmail,
    /// Failed logins per client address.
    LoginPerAddress,
    /// Sign-ups per client address.
    SignupPerAddress,
    /// Orders placed per user.
    OrdersPerUser,
}

impl Rule {
    pub fn key_part(self) -> &'static str {
        match self {
            Rule::LoginPerEmail => "login-email",
            Rule::LoginPerAddress => "login-addr",
            Rule::SignupPerAddress => "signup-addr",
            Rule::OrdersPerUser => "orders-user",
        }
    }

    /// The variable that sets this rule's limit.
    pub fn env_var(self) -> &'static str {
        match self {
            Rule::LoginPerEmail => "ORDERFLOW_RATE_LIMIT_LOGIN_PER_EMAIL",
            Rule::LoginPerAddress => "ORDERFLOW_RATE_LIMIT_LOGIN_PER_ADDRESS",
            Rule::SignupPerAddress => "ORDERFLOW_RATE_LIMIT_SIGNUP_PER_ADDRESS",
            Rule::OrdersPerUser => "ORDERFLOW_RATE_LIMIT_ORDERS_PER_USER",
        }
    }

    /// The default limit (README, "Security").
    pub fn default_limit(self) -> Limit {
        match self {
            // Ten wrong passwords per account per quarter hour stops online guessing of
            // one account while a forgetful customer is never locked out for long.
            Rule::LoginPerEmail => Limit::new(10, Duration::from_secs(15 * 60)),
            // Higher than per e-mail: an office or a mobile carrier puts many customers
            // behind one address; this is what stops spraying many accounts from one host.
            Rule::LoginPerAddress => Limit::new(50, Duration::from_secs(15 * 60)),
            Rule::SignupPerAddress => Limit::new(20, Duration::from_secs(3600)),
            Rule::OrdersPerUser => Limit::new(30, Duration::from_secs(60)),
        }
    }

    pub const ALL: [Rule; 4] = [
        Rule::LoginPerEmail,
        Rule::LoginPerAddress,
        Rule::SignupPerAddress,
        Rule::OrdersPerUser,
    ];
}

/// Every limit of the stack; `None` turns one rule off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// `ORDERFLOW_RATE_LIMITS=off` turns every limit off (bench and chaos child runners).
    pub enabled: bool,
    pub login_per_email: Option<Limit>,
    pub login_per_address: Option<Limit>,
    pub signup_per_address: Option<Limit>,
    pub orders_per_user: Option<Limit>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            login_per_email: Some(Rule::LoginPerEmail.default_limit()),
            login_per_address: Some(Rule::LoginPerAddress.default_limit()),
            signup_per_address: Some(Rule::SignupPerAddress.default_limit()),
            orders_per_user: Some(Rule::OrdersPerUser.default_limit()),
        }
    }
}

impl RateLimits {
    pub fn off() -> Self {
        RateLimits {
            enabled: false,
            ..Self::default()
        }
    }

    pub fn get(&self, rule: Rule) -> Option<Limit> {
        if !self.enabled {
            return None;
        }
        match rule {
            Rule::LoginPerEmail => self.login_per_email,
            Rule::LoginPerAddress => self.login_per_address,
            Rule::SignupPerAddress => self.signup_per_address,
            Rule::OrdersPerUser => self.orders_per_user,
        }
    }

    pub fn set(&mut self, rule: Rule, limit: Option<Limit>) {
        let slot = match rule {
            Rule::LoginPerEmail => &mut self.login_per_email,
            Rule::LoginPerAddress => &mut self.login_per_address,
            Rule::SignupPerAddress => &mut self.signup_per_address,
            Rule::OrdersPerUser => &mut self.orders_per_user,
        };
        *slot = limit;
    }

    /// From `ORDERFLOW_RATE_LIMITS` (`on`, the default, or `off`) and each rule's variable
    /// (`COUNT/PERIOD` or `off`); the error names the variable and why.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, (&'static str, String, String)> {
        let mut limits = RateLimits::default();
        if let Some(v) = get("ORDERFLOW_RATE_LIMITS") {
            limits.enabled = match v.trim() {
                "on" | "" => true,
                "off" => false,
                _ => {
                    return Err((
                        "ORDERFLOW_RATE_LIMITS",
                        v.clone(),
                        "expected on or off".into(),
                    ));
                }
            };
        }
        for rule in Rule::ALL {
            if let Some(v) = get(rule.env_var()) {
                let limit = if v.trim() == "off" {
                    None
                } else {
                    Some(Limit::parse(&v).map_err(|reason| (rule.env_var(), v.clone(), reason))?)
                };
                limits.set(rule, limit);
            }
        }
        Ok(limits)
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over `rule`'s limit; a retry after `retry_after` would be allowed.
    Limited {
        rule: Rule,
        retry_after: Duration,
    },
}

/// The GCRA step of one key, as the Lua script computes it (this is its specification, and
/// the unit tests hold both to it): the new TAT if allowed, else how long to wait.
pub fn gcra(now_ms: i64, tat_ms: Option<i64>, limit: Limit) -> Result<i64, i64> {
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat + limit.interval_ms();
    let wait = new_tat - limit.period_ms() - now_ms;
    if wait > 0 { Err(wait) } else { Ok(new_tat) }
}

/// A TAT after giving one request back: never before `now` (`None`: the key can go).
pub fn gcra_refund(now_ms: i64, tat_ms: Option<i64>, limit: Limit) -> Option<i64> {
    let tat = tat_ms? - limit.interval_ms();
    (tat > now_ms).then_some(tat)
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// Checks every key, and records the request in all of them only when all allow it.
/// KEYS: one per limit. ARGV[1]: `take` or `refund`; ARGV[2]: now in ms, or empty for
/// Redis' own clock (one clock for every execution environment); then per key its interval
/// and period in ms. Returns {allowed (1/0), wait ms, 1-based index of the key that refused}.
const SCRIPT: &str = r"
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if ARGV[1] == 'refund' then
  for i = 1, #KEYS do
    local tat = tonumber(redis.call('GET', KEYS[i]))
    if tat then
      tat = tat - tonumber(ARGV[1 + 2 * i])
      if tat > now then
        redis.call('SET', KEYS[i], tat, 'PX', tat - now)
      else
        redis.call('DEL', KEYS[i])
      end
    end
  end
  return {1, 0, 0}
end
local tats, refused, wait = {}, 0, 0
for i = 1, #KEYS do
  local interval, period = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local w = new_tat - period - now
  if w > 0 then
    if refused == 0 then refused = i end
    if w > wait then wait = w end
  end
  tats[i] = new_tat
end
if refused > 0 then return {0, wait, refused} end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], tats[i], 'PX', tats[i] - now)
end
return {1, 0, 0}
";

/// Checks requests against the stack's limits in Redis; built once per execution
/// environment.
#[derive(Clone)]
pub struct RateLimiter {
    redis: Redis,
    names: Names,
    limits: RateLimits,
    script: std::sync::Arc<redis::Script>,
}

impl RateLimiter {
    pub fn new(redis: Redis, names: Names, limits: RateLimits) -> Self {
        RateLimiter {
            redis,
            names,
            limits,
            script: std::sync::Arc::new(redis::Script::new(SCRIPT)),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// `<prefix>ratelimit:<rule>:<sha256(subject)>`.
    pub fn key(&self, rule: Rule, subject: &str) -> String {
        let digest = hex::encode(Sha256::digest(subject.as_bytes()));
        self.names
            .redis_key(&format!("ratelimit:{}:{}", rule.key_part(), &digest[..32]))
    }

    /// Takes one request from every `(rule, subject)` whose rule is on, all or nothing, in
    /// one script call. Nothing to check (limits off) asks nothing of Redis.
    pub async fn take(&self, checks: &[(Rule, &str)]) -> redis::RedisResult<Verdict> {
        self.take_at(checks, None).await
    }

    /// `take` at a given time in ms instead of Redis' clock (tests).
    pub async fn take_at(
        &self,
        checks: &[(Rule, &str)],
        now_ms: Option<i64>,
    ) -> redis::RedisResult<Verdict> {
        let active = self.active(checks);
        if active.is_empty() {
            return Ok(Verdict::Allowed);
        }
        let (allowed, wait, index): (i64, i64, i64) = self.invoke("take", &active, now_ms).await?;
        if allowed == 1 {
            return Ok(Verdict::Allowed);
        }
        // The script names the refusing key by its 1-based index among those sent.
        let rule = usize::try_from(index - 1)
            .ok()
            .and_then(|i| active.get(i))
            .or_else(|| active.first())
            .map_or(Rule::OrdersPerUser, |(rule, _, _)| *rule);
        Ok(Verdict::Limited {
            rule,
            retry_after: Duration::from_millis(wait.max(1) as u64),
        })
    }

    /// Gives one request back to each of `checks` (a login that turned out to be right).
    pub async fn refund(&self, checks: &[(Rule, &str)]) -> redis::RedisResult<()> {
        let active = self.active(checks);
        if active.is_empty() {
            return Ok(());
        }
        let _: (i64, i64, i64) = self.invoke("refund", &active, None).await?;
        Ok(())
    }

    fn active(&self, checks: &[(Rule, &str)]) -> Vec<(Rule, String, Limit)> {
        checks
            .iter()
            .filter_map(|(rule, subject)| {
                self.limits
                    .get(*rule)
                    .map(|limit| (*rule, self.key(*rule, subject), limit))
            })
            .collect()
    }

    async fn invoke(
        &self,
        mode: &str,
        active: &[(Rule, String, Limit)],
        now_ms: Option<i64>,
    ) -> redis::RedisResult<(i64, i64, i64)> {
        let mut conn = self.redis.conn().await?;
        let mut inv = self.script.prepare_invoke();
        inv.arg(mode)
            .arg(now_ms.map(|n| n.to_string()).unwrap_or_default());
        for (_, key, limit) in active {
            inv.key(key).arg(limit.interval_ms()).arg(limit.period_ms());
        }
        inv.invoke_async(&mut conn).await
    }
}

/// What a check does when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenRedisDown {
    /// 503: the request is not served unchecked (login, where the limit is what stops
    /// password guessing, and which needs Redis for its session anyway).
    Refuse,
    /// Served unchecked, with a warning (sign-up, which needs no Redis otherwise: an outage
    /// of the cache should not stop new customers; hashing stays bounded by its queue).
    Allow,
}

/// The 429 (with `Retry-After`) for a limited request, 503 or a pass when Redis is down.
pub async fn enforce(
    limiter: &RateLimiter,
    checks: &[(Rule, &str)],
    when_down: WhenRedisDown,
) -> Result<(), crate::http::ApiError> {
    match limiter.take(checks).await {
        Ok(Verdict::Allowed) => Ok(()),
        Ok(Verdict::Limited { rule, retry_after }) => {
            tracing::warn!(
                rule = rule.key_part(),
                retry_after_ms = retry_after.as_millis() as u64,
                "rate limited"
            );
            Err(crate::http::ApiError::rate_limited(retry_after_secs(
                retry_after,
            )))
        }
        Err(e) if when_down == WhenRedisDown::Allow => {
            tracing::warn!(error = %e, "rate limit store unavailable; request served unchecked");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_fresh_key_allows_a_burst_of_count_then_refuses_for_one_interval() {
        let limit = Limit::new(30, MIN); // one every 2 s, 30 at once
        let now = 1_000_000;
        let mut tat = None;
        for i in 0..30 {
            tat = Some(gcra(now, tat, limit).unwrap_or_else(|w| panic!("request {i}: wait {w}")));
        }
        assert_eq!(tat, Some(now + 60_000));
        assert_eq!(
            gcra(now, tat, limit),
            Err(2_000),
            "the 31st waits one interval"
        );
        assert_eq!(gcra(now + 1_999, tat, limit), Err(1));
        assert_eq!(gcra(now + 2_000, tat, limit), Ok(now + 62_000));
    }

    #[test]
    fn a_refused_request_does_not_use_the_budget() {
        let limit = Limit::new(2, Duration::from_secs(10));
        let now = 0;
        let tat = gcra(now, None, limit).and_then(|t| gcra(now, Some(t), limit));
        let tat = tat.unwrap();
        // Hammering while refused never pushes the wait further out.
        for _ in 0..100 {
            assert_eq!(gcra(now, Some(tat), limit), Err(5_000));
        }
    }

    #[test]
    fn an_idle_key_refills_to_a_full_burst_and_no_more() {
        let limit = Limit::new(10, Duration::from_secs(900));
        let mut tat = Some(0);
        for _ in 0..10 {
            tat = Some(gcra(0, tat, limit).unwrap());
        }
        assert!(gcra(0, tat, limit).is_err());
        // A day later: a burst of 10 again, not 10 per quarter hour missed.
        let later = 86_400_000;
        let mut t = tat;
        for _ in 0..10 {
            t = Some(gcra(later, t, limit).unwrap());
        }
        assert_eq!(gcra(later, t, limit), Err(90_000));
    }

    #[test]
    fn a_refund_gives_one_interval_back_but_never_credit_beyond_a_full_bucket() {
        let limit = Limit::new(3, Duration::from_secs(3));
        let tat = [None, Some(1000), Some(2000)]
            .into_iter()
            .try_fold(None, |t, _| gcra(0, t, limit).map(Some))
            .unwrap();
        assert_eq!(tat, Some(3000));
        assert_eq!(gcra_refund(0, tat, limit), Some(2000));
        assert_eq!(
            gcra_refund(0, Some(500), limit),
            None,
            "cannot go below now"
        );
        assert_eq!(gcra_refund(0, None, limit), None);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn limits_parse_with_units_and_refuse_nonsense() {
        assert_eq!(Limit::parse("10/15m"), Ok(Limit::new(10, 15 * MIN)));
        assert_eq!(Limit::parse(" 30 / 60 "), Ok(Limit::new(30, MIN)));
        assert_eq!(Limit::parse("20/1h"), Ok(Limit::new(20, 60 * MIN)));
        assert_eq!(
            Limit::parse("5/30s"),
            Ok(Limit::new(5, Duration::from_secs(30)))
        );
        for bad in ["", "10", "0/1m", "10/0", "10/1d", "-1/1m", "x/1m", "10/m"] {
            assert!(Limit::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_environment_sets_each_limit_or_turns_all_off() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let d = RateLimits::from_lookup(&env(&[])).unwrap();
        assert_eq!(d, RateLimits::default());
        assert!(d.enabled);
        let l = RateLimits::from_lookup(&env(&[
            ("ORDERFLOW_RATE_LIMIT_ORDERS_PER_USER", "3/1m"),
            ("ORDERFLOW_RATE_LIMIT_SIGNUP_PER_ADDRESS", "off"),
        ]))
        .unwrap();
        assert_eq!(l.get(Rule::OrdersPerUser), Some(Limit::new(3, MIN)));
        assert_eq!(l.get(Rule::SignupPerAddress), None);
        let off = RateLimits::from_lookup(&env(&[("ORDERFLOW_RATE_LIMITS", "off")])).unwrap();
        assert!(Rule::ALL.iter().all(|r| off.get(*r).is_none()));
        let err = RateLimits::from_lookup(&env(&[("ORDERFLOW_RATE_LIMITS", "no")])).unwrap_err();
        assert_eq!(err.0, "ORDERFLOW_RATE_LIMITS");
        let err =
            RateLimits::from_lookup(&env(&[("ORDERFLOW_RATE_LIMIT_LOGIN_PER_EMAIL", "lots")]))
                .unwrap_err();
        assert_eq!(err.0, "ORDERFLOW_RATE_LIMIT_LOGIN_PER_EMAIL");
    }
}
