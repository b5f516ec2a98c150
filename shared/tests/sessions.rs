//! Sessions against the real local Redis: the idle timeout slides, the absolute lifetime
//! does not (a token kept busy still dies on time), the expiry reported is the one Redis
//! enforces, logging out everywhere kills every token of the user and no one else's, and a
//! session stored in the old format (no absolute deadline) is not honoured.

use shared::cache::Redis;
use shared::session::{Session, Sessions};
use shared::topology::Names;
use std::time::{Duration, Instant};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn sessions(ttl: Duration, max: Duration) -> (Sessions, String) {
    let prefix = shared::testing::random_prefix();
    let redis = Redis::new(&redis_url()).expect("redis url");
    (
        Sessions::new(redis, Names::new(prefix.clone()), ttl, max),
        prefix,
    )
}

fn ada() -> Session {
    Session {
        user_id: uuid::Uuid::new_v4(),
        email: "ada@example.com".into(),
        role: Default::default(),
    }
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

fn close_to(a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>) -> bool {
    (a - b).num_milliseconds().abs() < 300
}

#[tokio::test]
async fn a_session_in_use_still_ends_at_its_absolute_lifetime() {
    let (s, _) = sessions(Duration::from_millis(800), Duration::from_millis(2_000));
    let started = Instant::now();
    let created_at = chrono::Utc::now();
    let (token, expires) = s.create(&ada()).await.expect("redis");
    assert!(close_to(
        expires,
        created_at + chrono::Duration::milliseconds(800)
    ));
    // Used every 200 ms: the idle timeout (800 ms) never runs out ...
    let mut last_alive = Duration::ZERO;
    while started.elapsed() < Duration::from_millis(3_000) {
        match s.validate(&token).await.expect("redis") {
            Some(_) => last_alive = started.elapsed(),
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ... but the absolute lifetime (2 s) does, activity or not.
    assert!(
        last_alive >= Duration::from_millis(1_500) && last_alive < Duration::from_millis(2_100),
        "alive until {last_alive:?}"
    );
    assert_eq!(s.validate(&token).await.expect("redis"), None);
}

#[tokio::test]
async fn an_idle_session_ends_after_the_idle_timeout() {
    let (s, _) = sessions(Duration::from_millis(500), Duration::from_secs(60));
    let (token, _) = s.create(&ada()).await.expect("redis");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s.validate(&token).await.expect("redis"), None);
}

#[tokio::test]
async fn the_expiry_reported_is_the_one_redis_enforces_before_and_after_use() {
    // The idle timeout is longer than the whole lifetime: expires_at is the lifetime's end.
    let (s, _) = sessions(Duration::from_secs(3_600), Duration::from_secs(120));
    let now = chrono::Utc::now();
    let (token, expires) = s.create(&ada()).await.expect("redis");
    assert!(
        close_to(expires, now + chrono::Duration::seconds(120)),
        "{expires} vs {now}"
    );
    let (_, after_use) = s
        .validate_until(&token)
        .await
        .expect("redis")
        .expect("alive");
    assert!(
        close_to(after_use, expires),
        "use never extends past the lifetime"
    );

    // The usual case: the idle timeout ends first and each use moves it.
    let (s, prefix) = sessions(Duration::from_secs(60), Duration::from_secs(3_600));
    let (token, expires) = s.create(&ada()).await.expect("redis");
    assert!(close_to(
        expires,
        chrono::Utc::now() + chrono::Duration::seconds(60)
    ));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, after_use) = s
        .validate_until(&token)
        .await
        .expect("redis")
        .expect("alive");
    assert!(after_use > expires, "use slides the idle timeout");
    assert!(close_to(
        after_use,
        chrono::Utc::now() + chrono::Duration::seconds(60)
    ));
    // And Redis holds the key exactly that long.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}session:*"))
        .query_async(&mut raw().await)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1);
    let pexpire_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&keys[0])
        .query_async(&mut raw().await)
        .await
        .expect("pexpiretime");
    assert_eq!(pexpire_at, after_use.timestamp_millis());
}

#[tokio::test]
async fn logging_out_everywhere_kills_every_token_of_the_user_and_no_one_elses() {
    let (s, prefix) = sessions(Duration::from_secs(60), Duration::from_secs(600));
    let ada = ada();
    let bob = Session {
        user_id: uuid::Uuid::new_v4(),
        email: "bob@example.com".into(),
        role: Default::default(),
    };
    let (phone, _) = s.create(&ada).await.expect("redis");
    let (laptop, _) = s.create(&ada).await.expect("redis");
    let (bobs, _) = s.create(&bob).await.expect("redis");
    assert_eq!(s.revoke_all(ada.user_id).await.expect("redis"), 2);
    assert_eq!(s.validate(&phone).await.expect("redis"), None);
    assert_eq!(s.validate(&laptop).await.expect("redis"), None);
    assert_eq!(s.validate(&bobs).await.expect("redis"), Some(bob.clone()));
    // Nothing of ada's is left in Redis, and a new login works as before.
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}session-user:{}", ada.user_id))
        .query_async(&mut raw().await)
        .await
        .expect("keys");
    assert!(left.is_empty(), "{left:?}");
    let (again, _) = s.create(&ada).await.expect("redis");
    assert_eq!(s.validate(&again).await.expect("redis"), Some(ada.clone()));
    // Logging out one token takes it out of the user's set too.
    assert!(s.revoke(&again).await.expect("redis"));
    assert_eq!(s.revoke_all(ada.user_id).await.expect("redis"), 0);
}

#[tokio::test]
async fn a_session_stored_without_an_absolute_deadline_is_not_honoured() {
    let (s, prefix) = sessions(Duration::from_secs(60), Duration::from_secs(600));
    // As the previous version stored it: the JSON under the token's hash, a sliding TTL.
    let token = "ofs_an-old-token";
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    };
    let key = format!("{prefix}session:{digest}");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(serde_json::to_string(&ada()).expect("json"))
        .arg("EX")
        .arg(3_600)
        .query_async(&mut raw().await)
        .await
        .expect("set");
    assert_eq!(s.validate(token).await.expect("redis"), None);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut raw().await)
        .await
        .expect("exists");
    assert_eq!(exists, 0, "and it is gone");
}
