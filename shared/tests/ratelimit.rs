//! The rate limiter's Lua script against the real local Redis: it computes exactly what the
//! GCRA specification in `shared::ratelimit::gcra` says, checks several keys all or nothing
//! in one call, keeps its keys under the stack's prefix, and asks nothing of Redis when off.

use shared::cache::Redis;
use shared::ratelimit::{Limit, RateLimiter, RateLimits, Rule, Verdict, gcra};
use shared::topology::Names;
use std::time::Duration;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn limiter(limits: RateLimits) -> (RateLimiter, String) {
    let prefix = shared::testing::random_prefix();
    let redis = Redis::new(&redis_url()).expect("redis url");
    (
        RateLimiter::new(redis, Names::new(prefix.clone()), limits),
        prefix,
    )
}

fn limits(email: Limit, addr: Limit) -> RateLimits {
    RateLimits {
        login_per_email: Some(email),
        login_per_address: Some(addr),
        ..RateLimits::default()
    }
}

#[tokio::test]
async fn the_script_follows_the_gcra_specification_step_by_step() {
    let limit = Limit::new(3, Duration::from_secs(6)); // one every 2 s, 3 at once
    let (l, _) = limiter(limits(limit, limit));
    let mut tat: Option<i64> = None;
    let t0 = 1_800_000_000_000i64;
    // A burst, a refusal, partial refills and a long pause, at chosen instants.
    for offset in [
        0, 0, 0, 0, 500, 1_999, 2_000, 2_001, 9_000, 9_000, 9_000, 9_000,
    ] {
        let now = t0 + offset;
        let expected = gcra(now, tat, limit);
        let got = l
            .take_at(&[(Rule::LoginPerEmail, "ada@example.com")], Some(now))
            .await
            .expect("redis");
        match expected {
            Ok(new_tat) => {
                assert_eq!(got, Verdict::Allowed, "at +{offset} ms");
                tat = Some(new_tat);
            }
            Err(wait) => assert_eq!(
                got,
                Verdict::Limited {
                    rule: Rule::LoginPerEmail,
                    retry_after: Duration::from_millis(wait as u64)
                },
                "at +{offset} ms"
            ),
        }
    }
}

#[tokio::test]
async fn several_keys_are_taken_all_or_nothing_and_the_refusing_rule_is_named() {
    let (l, _) = limiter(limits(
        Limit::new(5, Duration::from_secs(60)),
        Limit::new(2, Duration::from_secs(60)),
    ));
    let now = Some(1_800_000_000_000);
    let both = |email: &'static str| {
        [
            (Rule::LoginPerEmail, email),
            (Rule::LoginPerAddress, "203.0.113.9"),
        ]
    };
    assert_eq!(
        l.take_at(&both("a@x.io"), now).await.expect("redis"),
        Verdict::Allowed
    );
    assert_eq!(
        l.take_at(&both("b@x.io"), now).await.expect("redis"),
        Verdict::Allowed
    );
    // The address is spent: a third e-mail from it is refused, naming the address rule ...
    let v = l.take_at(&both("c@x.io"), now).await.expect("redis");
    assert!(
        matches!(
            v,
            Verdict::Limited {
                rule: Rule::LoginPerAddress,
                ..
            }
        ),
        "{v:?}"
    );
    // ... and the refused attempt took nothing from that e-mail's own budget.
    for i in 0..5 {
        assert_eq!(
            l.take_at(&[(Rule::LoginPerEmail, "c@x.io")], now)
                .await
                .expect("redis"),
            Verdict::Allowed,
            "attempt {i} for c@x.io"
        );
    }
}

#[tokio::test]
async fn a_refund_gives_an_attempt_back_and_keys_live_under_the_prefix_with_a_ttl() {
    let (l, prefix) = limiter(limits(
        Limit::new(1, Duration::from_secs(60)),
        Limit::new(1, Duration::from_secs(60)),
    ));
    let check = [(Rule::LoginPerEmail, "ada@example.com")];
    assert_eq!(l.take(&check).await.expect("redis"), Verdict::Allowed);
    assert!(matches!(
        l.take(&check).await.expect("redis"),
        Verdict::Limited { .. }
    ));
    l.refund(&check).await.expect("redis");
    assert_eq!(l.take(&check).await.expect("redis"), Verdict::Allowed);

    let key = l.key(Rule::LoginPerEmail, "ada@example.com");
    assert!(
        key.starts_with(&format!("{prefix}ratelimit:login-email:")),
        "{key}"
    );
    assert!(!key.contains("ada"), "no e-mail in key names: {key}");
    let client = redis::Client::open(redis_url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("pttl");
    assert!(
        (1..=60_000).contains(&ttl),
        "the key expires once its budget is whole again: {ttl}"
    );
}

#[tokio::test]
async fn limits_that_are_off_never_ask_redis() {
    // Nothing listens on port 1: any Redis call would fail.
    let redis = Redis::new("redis://127.0.0.1:1").expect("url");
    let off = RateLimiter::new(redis.clone(), Names::new("t."), RateLimits::off());
    let checks = [(Rule::OrdersPerUser, "u1"), (Rule::LoginPerEmail, "a@x.io")];
    assert_eq!(
        off.take(&checks).await.expect("no Redis asked"),
        Verdict::Allowed
    );
    let mut one_off = RateLimits::default();
    one_off.set(Rule::OrdersPerUser, None);
    let l = RateLimiter::new(redis, Names::new("t."), one_off);
    assert_eq!(
        l.take(&[(Rule::OrdersPerUser, "u1")])
            .await
            .expect("no Redis asked"),
        Verdict::Allowed
    );
    assert!(
        l.take(&[(Rule::LoginPerEmail, "a@x.io")]).await.is_err(),
        "a rule that is on does ask"
    );
}
