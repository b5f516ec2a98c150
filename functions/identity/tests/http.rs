//! Identity's HTTP functions against the real local Postgres and Redis.

use serde_json::{Value, json};
use shared::Function;
use shared::testing::TestEnv;
use std::sync::Arc;

struct Api {
    env: TestEnv,
    register: Arc<dyn Function>,
    login: Arc<dyn Function>,
    logout: Arc<dyn Function>,
}

async fn api() -> Api {
    let env = TestEnv::new().await;
    env.migrate(identity::SCHEMA, &identity::MIGRATOR).await;
    Api {
        register: identity::functions::register(&env.ctx),
        login: identity::functions::login(&env.ctx),
        logout: identity::functions::logout(&env.ctx),
        env,
    }
}

/// Status and parsed JSON body (`Null` when empty).
async fn call(
    f: &Arc<dyn Function>,
    method: &str,
    path: &str,
    route: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (i64, Value) {
    let (status, body, _) = call_from(f, method, path, route, body, token, None).await;
    (status, body)
}

/// Same, from a client address (API Gateway's `sourceIp`), with the answer's headers.
async fn call_from(
    f: &Arc<dyn Function>,
    method: &str,
    path: &str,
    route: &str,
    body: Option<&str>,
    token: Option<&str>,
    source_ip: Option<&str>,
) -> (i64, Value, Value) {
    let mut req = shared::http::request(method, path, route);
    req.request_context.http.source_ip = source_ip.map(str::to_string);
    req.body = body.map(str::to_string);
    req.headers
        .insert("content-type", "application/json".parse().expect("header"));
    if let Some(t) = token {
        req.headers.insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    let out = f
        .invoke(serde_json::to_value(req).expect("request json"))
        .await
        .expect("invocation");
    let status = out["statusCode"].as_i64().expect("statusCode");
    let body = match out["body"].as_str() {
        Some(b) if !b.is_empty() => serde_json::from_str(b).expect("json body"),
        _ => Value::Null,
    };
    (status, body, out["headers"].clone())
}

impl Api {
    async fn register(&self, body: &str) -> (i64, Value) {
        call(
            &self.register,
            "POST",
            "/users",
            "POST /users",
            Some(body),
            None,
        )
        .await
    }
    async fn login(&self, body: &str) -> (i64, Value) {
        call(
            &self.login,
            "POST",
            "/sessions",
            "POST /sessions",
            Some(body),
            None,
        )
        .await
    }
    async fn logout(&self, token: Option<&str>) -> (i64, Value) {
        call(
            &self.logout,
            "DELETE",
            "/sessions/current",
            "DELETE /sessions/current",
            None,
            token,
        )
        .await
    }
}

fn creds(email: &str, password: &str) -> String {
    json!({"email": email, "password": password}).to_string()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn registering_returns_201_with_a_user_id() {
    let api = api().await;
    let (status, body) = api
        .register(&creds("ada@example.com", "correct horse"))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["user_id"].as_str().expect("user_id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn the_same_email_in_another_case_is_409_email_taken() {
    let api = api().await;
    assert_eq!(
        api.register(&creds("ada@example.com", "correct horse"))
            .await
            .0,
        201
    );
    let (status, body) = api
        .register(&creds("  ADA@Example.COM ", "another password"))
        .await;
    assert_eq!((status, code(&body)), (409, "email_taken"), "{body}");
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_create_one_user() {
    let api = api().await;
    let (first, second) = (
        creds("race@example.com", "correct horse"),
        creds("RACE@example.com", "correct horse"),
    );
    let (a, b) = tokio::join!(api.register(&first), api.register(&second));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{a:?} {b:?}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM identity.users")
        .fetch_one(&api.env.ctx.pool)
        .await
        .expect("count");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_malformed_email_is_400_invalid_request() {
    let api = api().await;
    for email in [
        "not-an-email",
        "a@b@example.com",
        "@example.com",
        "user@localhost",
        "us er@example.com",
    ] {
        let (status, body) = api.register(&creds(email, "correct horse")).await;
        assert_eq!(
            (status, code(&body)),
            (400, "invalid_request"),
            "{email}: {body}"
        );
    }
}

#[tokio::test]
async fn a_short_or_huge_password_is_400_invalid_request() {
    let api = api().await;
    for pw in ["1234567".to_string(), "x".repeat(1025)] {
        let (status, body) = api.register(&creds("ada@example.com", &pw)).await;
        assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    }
}

#[tokio::test]
async fn malformed_json_wrong_types_and_missing_bodies_are_400() {
    let api = api().await;
    for body in [
        r#"{"email": "ada@example.com", "password": "#,
        r#"{"email": 42, "password": "correct horse"}"#,
        r#"{"email": "ada@example.com"}"#,
        "[]",
        "",
    ] {
        let (status, resp) = api.register(body).await;
        assert_eq!(
            (status, code(&resp)),
            (400, "invalid_request"),
            "{body:?}: {resp}"
        );
        let (status, resp) = api.login(body).await;
        assert_eq!(
            (status, code(&resp)),
            (400, "invalid_request"),
            "login {body:?}: {resp}"
        );
    }
}

#[tokio::test]
async fn logging_in_returns_a_token_that_the_session_store_accepts() {
    let api = api().await;
    let (_, reg) = api
        .register(&creds("Ada@Example.com", "correct horse"))
        .await;
    let (status, body) = api.login(&creds("ada@example.com", "correct horse")).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token");
    let expires_at = body["expires_at"].as_str().expect("expires_at");
    let expires = chrono::DateTime::parse_from_rfc3339(expires_at).expect("RFC 3339");
    assert!(expires > chrono::Utc::now());
    let session = api
        .env
        .ctx
        .sessions
        .validate(token)
        .await
        .expect("redis")
        .expect("live session");
    assert_eq!(
        session.user_id.to_string(),
        reg["user_id"].as_str().expect("user_id")
    );
    assert_eq!(session.email, "Ada@Example.com");
}

#[tokio::test]
async fn a_wrong_password_is_401_invalid_credentials() {
    let api = api().await;
    api.register(&creds("ada@example.com", "correct horse"))
        .await;
    let (status, body) = api.login(&creds("ada@example.com", "wrong horse!")).await;
    assert_eq!(
        (status, code(&body)),
        (401, "invalid_credentials"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_user_is_401_invalid_credentials() {
    let api = api().await;
    let (status, body) = api
        .login(&creds("nobody@example.com", "correct horse"))
        .await;
    assert_eq!(
        (status, code(&body)),
        (401, "invalid_credentials"),
        "{body}"
    );
}

#[tokio::test]
async fn logging_out_kills_the_token() {
    let api = api().await;
    api.register(&creds("ada@example.com", "correct horse"))
        .await;
    let (_, body) = api.login(&creds("ada@example.com", "correct horse")).await;
    let token = body["token"].as_str().expect("token").to_string();

    let (status, body) = api.logout(Some(&token)).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        api.env.ctx.sessions.validate(&token).await.expect("redis"),
        None
    );

    let (status, body) = api.logout(Some(&token)).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
}

#[tokio::test]
async fn logging_out_without_a_token_is_401() {
    let api = api().await;
    let (status, body) = api.logout(None).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    let (status, body) = api.logout(Some("ofs_not-a-real-token")).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
}

#[tokio::test]
async fn redis_down_makes_login_and_logout_503() {
    let env = TestEnv::with_config(|c| c.redis_url = "redis://127.0.0.1:1".into()).await;
    env.migrate(identity::SCHEMA, &identity::MIGRATOR).await;
    let register = identity::functions::register(&env.ctx);
    let login = identity::functions::login(&env.ctx);
    let logout = identity::functions::logout(&env.ctx);
    let (status, _) = call(
        &register,
        "POST",
        "/users",
        "POST /users",
        Some(&creds("ada@example.com", "correct horse")),
        None,
    )
    .await;
    assert_eq!(status, 201, "registration needs no Redis");
    // Nor does its rate limit stop sign-ups while Redis is down (it fails open).
    let (status, body, _) = call_from(
        &register,
        "POST",
        "/users",
        "POST /users",
        Some(&creds("bob@example.com", "correct horse")),
        None,
        Some("198.51.100.7"),
    )
    .await;
    assert_eq!(status, 201, "sign-up with the limiter unreachable: {body}");
    let (status, body) = call(
        &login,
        "POST",
        "/sessions",
        "POST /sessions",
        Some(&creds("ada@example.com", "correct horse")),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (503, "dependency_unavailable"),
        "{body}"
    );
    let (status, body) = call(
        &logout,
        "DELETE",
        "/sessions/current",
        "DELETE /sessions/current",
        None,
        Some("ofs_x"),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (503, "dependency_unavailable"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_route_is_404() {
    let api = api().await;
    let (status, body) = call(&api.register, "GET", "/users", "GET /users", None, None).await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
}

// ---- Hardening: rate limits, bounded hashing, input, sessions, log levels ----------------

use shared::ratelimit::{Limit, RateLimits};
use std::time::Duration;

const MIN15: Duration = Duration::from_secs(15 * 60);

async fn api_with(limits: RateLimits) -> Api {
    let env = TestEnv::with_config(|c| c.rate_limits = limits).await;
    env.migrate(identity::SCHEMA, &identity::MIGRATOR).await;
    Api {
        register: identity::functions::register(&env.ctx),
        login: identity::functions::login(&env.ctx),
        logout: identity::functions::logout(&env.ctx),
        env,
    }
}

impl Api {
    async fn login_from(&self, body: &str, ip: &str) -> (i64, Value, Value) {
        call_from(
            &self.login,
            "POST",
            "/sessions",
            "POST /sessions",
            Some(body),
            None,
            Some(ip),
        )
        .await
    }
    async fn register_from(&self, body: &str, ip: &str) -> (i64, Value, Value) {
        call_from(
            &self.register,
            "POST",
            "/users",
            "POST /users",
            Some(body),
            None,
            Some(ip),
        )
        .await
    }
}

fn retry_after(headers: &Value) -> u64 {
    headers["retry-after"]
        .as_str()
        .unwrap_or_else(|| panic!("Retry-After header: {headers}"))
        .parse()
        .expect("Retry-After in whole seconds")
}

#[tokio::test]
async fn ten_failed_logins_for_one_email_then_429_with_retry_after_even_for_the_right_password() {
    // The documented default: 10 failed logins per e-mail per 15 minutes.
    let api = api().await;
    api.register(&creds("ada@example.com", "correct horse"))
        .await;
    for i in 0..10 {
        // From a new address each time: only the per-e-mail limit can stop this.
        let (status, body, _) = api
            .login_from(
                &creds("ada@example.com", &format!("guess {i}!!")),
                &format!("203.0.113.{i}"),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (401, "invalid_credentials"),
            "{i}: {body}"
        );
    }
    for pw in ["another guess", "correct horse"] {
        let (status, body, headers) = api
            .login_from(&creds(" ADA@example.com", pw), "203.0.113.99")
            .await;
        assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
        // One failure's worth of the budget comes back every 90 s (15 min / 10).
        assert!((1..=90).contains(&retry_after(&headers)), "{headers}");
        assert!(body["error"]["message"].is_string());
    }
    // Another account is not affected.
    api.register(&creds("bob@example.com", "correct horse"))
        .await;
    let (status, body, _) = api
        .login_from(&creds("bob@example.com", "correct horse"), "203.0.113.99")
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_right_password_gives_its_attempt_back_so_only_failures_count() {
    let api = api_with(RateLimits {
        login_per_email: Some(Limit::new(2, MIN15)),
        ..RateLimits::default()
    })
    .await;
    api.register(&creds("ada@example.com", "correct horse"))
        .await;
    for i in 0..5 {
        let (status, body, _) = api
            .login_from(&creds("ada@example.com", "correct horse"), "192.0.2.1")
            .await;
        assert_eq!(status, 201, "login {i}: {body}");
    }
    for _ in 0..2 {
        let (status, _, _) = api
            .login_from(&creds("ada@example.com", "wrong horse"), "192.0.2.1")
            .await;
        assert_eq!(status, 401);
    }
    let (status, body, _) = api
        .login_from(&creds("ada@example.com", "wrong horse"), "192.0.2.1")
        .await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
}

#[tokio::test]
async fn failed_logins_from_one_address_across_many_emails_then_429() {
    let api = api_with(RateLimits {
        login_per_address: Some(Limit::new(3, MIN15)),
        ..RateLimits::default()
    })
    .await;
    // Password spraying: one guess per account, all from one host.
    for i in 0..3 {
        let (status, _, _) = api
            .login_from(
                &creds(&format!("user{i}@example.com"), "Summer2026!"),
                "198.51.100.7",
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, body, headers) = api
        .login_from(&creds("user9@example.com", "Summer2026!"), "198.51.100.7")
        .await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    assert!((1..=300).contains(&retry_after(&headers)), "{headers}");
    // Another host is not affected; an IPv6 host is counted by its /64, so hopping
    // addresses inside it does not help.
    let (status, _, _) = api
        .login_from(&creds("user9@example.com", "Summer2026!"), "198.51.100.8")
        .await;
    assert_eq!(status, 401);
    for i in 1..=3 {
        let (status, _, _) = api
            .login_from(
                &creds("v6@example.com", "Summer2026!"),
                &format!("2001:db8:1:2::{i}"),
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, _, _) = api
        .login_from(
            &creds("v6@example.com", "Summer2026!"),
            "2001:db8:1:2:ffff::9",
        )
        .await;
    assert_eq!(status, 429, "same /64");
}

#[tokio::test]
async fn sign_ups_from_one_address_beyond_the_limit_get_429_with_retry_after() {
    let api = api_with(RateLimits {
        signup_per_address: Some(Limit::new(2, Duration::from_secs(3600))),
        ..RateLimits::default()
    })
    .await;
    for i in 0..2 {
        let (status, body, _) = api
            .register_from(
                &creds(&format!("new{i}@example.com"), "correct horse"),
                "192.0.2.50",
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body, headers) = api
        .register_from(&creds("new2@example.com", "correct horse"), "192.0.2.50")
        .await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    // 2 per hour: the next one in half an hour.
    let wait = retry_after(&headers);
    assert!((1700..=1800).contains(&wait), "{wait}");
    let (status, _, _) = api
        .register_from(&creds("new2@example.com", "correct horse"), "192.0.2.51")
        .await;
    assert_eq!(status, 201, "another address may sign up");
}

#[tokio::test]
async fn with_rate_limits_off_nothing_is_limited() {
    let mut limits = RateLimits::off();
    limits.login_per_email = Some(Limit::new(1, MIN15));
    limits.signup_per_address = Some(Limit::new(1, MIN15));
    let api = api_with(limits).await;
    for i in 0..3 {
        let (status, _, _) = api
            .register_from(
                &creds(&format!("x{i}@example.com"), "correct horse"),
                "192.0.2.9",
            )
            .await;
        assert_eq!(status, 201);
        let (status, _, _) = api
            .login_from(&creds("x0@example.com", "wrong horse"), "192.0.2.9")
            .await;
        assert_eq!(status, 401);
    }
}

#[tokio::test]
async fn a_nul_byte_or_control_character_in_any_field_is_400_not_500() {
    let api = api().await;
    api.register(&creds("ada@example.com", "correct horse"))
        .await;
    let bodies = [
        json!({"email": "ada\u{0}@example.com", "password": "correct horse"}),
        json!({"email": "ada@example.com\u{0}", "password": "correct horse"}),
        json!({"email": "ada@example.com", "password": "correct\u{0}horse"}),
        json!({"email": "ada@example.com", "password": "correct horse\n"}),
        json!({"email": "ada@exa\u{1b}[31mmple.com", "password": "correct horse"}),
        json!({"email": "ada@example.com", "password": "correct horse", "x\u{0}": 1}),
    ];
    for b in bodies {
        let text = b.to_string();
        for (what, (status, body)) in [
            ("register", api.register(&text).await),
            ("login", api.login(&text).await),
        ] {
            assert_eq!(
                (status, code(&body)),
                (400, "invalid_request"),
                "{what} {text}: {body}"
            );
            let message = body["error"]["message"].as_str().expect("message");
            assert!(message.contains("control character"), "{message}");
        }
    }
    let (_, body) = api
        .login(&json!({"email": "ada\u{0}@example.com", "password": "x"}).to_string())
        .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"email\"")),
        "the message names the field: {body}"
    );
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after_at_once() {
    let env = TestEnv::new().await;
    env.migrate(identity::SCHEMA, &identity::MIGRATOR).await;
    let pool = Arc::new(identity::password::HashingPool::new(1, 1));
    let f = identity::functions::function(identity::functions::Identity::with_hashing(
        &env.ctx,
        pool.clone(),
    ));
    // One hash running (held), one waiting: the queue is full.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let running = pool
        .submit(move || {
            let _ = started_tx.send(());
            let _ = hold.recv();
        })
        .expect("queued");
    started_rx.await.expect("the held hash started");
    let waiting = pool.submit(|| ()).expect("queued");
    let started = std::time::Instant::now();
    for (route, path) in [("POST /users", "/users"), ("POST /sessions", "/sessions")] {
        let (status, body, headers) = call_from(
            &f,
            "POST",
            path,
            route,
            Some(&creds("ada@example.com", "correct horse")),
            None,
            Some("192.0.2.1"),
        )
        .await;
        assert_eq!((status, code(&body)), (503, "busy"), "{route}: {body}");
        assert_eq!(retry_after(&headers), 1);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused quickly, not queued: {:?}",
        started.elapsed()
    );
    drop(release);
    running.await.expect("ran");
    waiting.await.expect("ran");
    let (status, body) = call(
        &f,
        "POST",
        "/users",
        "POST /users",
        Some(&creds("ada@example.com", "correct horse")),
        None,
    )
    .await;
    assert_eq!(status, 201, "served again once the queue drains: {body}");
}

#[tokio::test]
async fn logging_out_everywhere_kills_every_session_of_the_user_only() {
    let api = api().await;
    api.register(&creds("ada@example.com", "correct horse"))
        .await;
    api.register(&creds("bob@example.com", "correct horse"))
        .await;
    let token = |b: Value| b["token"].as_str().expect("token").to_string();
    let phone = token(
        api.login(&creds("ada@example.com", "correct horse"))
            .await
            .1,
    );
    let laptop = token(
        api.login(&creds("ada@example.com", "correct horse"))
            .await
            .1,
    );
    let bobs = token(
        api.login(&creds("bob@example.com", "correct horse"))
            .await
            .1,
    );
    let logout_all = |t: Option<String>| {
        let f = api.logout.clone();
        async move {
            call(
                &f,
                "DELETE",
                "/sessions",
                "DELETE /sessions",
                None,
                t.as_deref(),
            )
            .await
        }
    };
    let (status, body) = logout_all(Some(phone.clone())).await;
    assert_eq!(status, 204, "{body}");
    let sessions = &api.env.ctx.sessions;
    assert_eq!(sessions.validate(&phone).await.expect("redis"), None);
    assert_eq!(
        sessions.validate(&laptop).await.expect("redis"),
        None,
        "the other device too"
    );
    assert!(
        sessions.validate(&bobs).await.expect("redis").is_some(),
        "not another user's"
    );
    // The dead token can do nothing more, not even log out everywhere again.
    let (status, body) = logout_all(Some(laptop)).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    let (status, body) = logout_all(None).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    // `DELETE /sessions/current` still ends only its own token.
    let ada2 = token(
        api.login(&creds("ada@example.com", "correct horse"))
            .await
            .1,
    );
    let ada3 = token(
        api.login(&creds("ada@example.com", "correct horse"))
            .await
            .1,
    );
    assert_eq!(api.logout(Some(&ada2)).await.0, 204);
    assert!(sessions.validate(&ada3).await.expect("redis").is_some());
}

#[tokio::test]
async fn expires_at_is_when_the_session_really_ends() {
    let env = TestEnv::with_config(|c| {
        c.session_ttl = Duration::from_secs(3600);
        c.session_max_lifetime = Duration::from_secs(600);
    })
    .await;
    env.migrate(identity::SCHEMA, &identity::MIGRATOR).await;
    let register = identity::functions::register(&env.ctx);
    let login = identity::functions::login(&env.ctx);
    let c = creds("ada@example.com", "correct horse");
    call(&register, "POST", "/users", "POST /users", Some(&c), None).await;
    let before = chrono::Utc::now();
    let (status, body) = call(
        &login,
        "POST",
        "/sessions",
        "POST /sessions",
        Some(&c),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("expires_at"))
            .expect("RFC 3339");
    // The lifetime (10 min) ends before the idle timeout (1 h) would.
    let off = (expires.with_timezone(&chrono::Utc) - (before + chrono::Duration::seconds(600)))
        .num_milliseconds();
    assert!((-1000..=1000).contains(&off), "expires_at off by {off} ms");
    let (_, after_use) = env
        .ctx
        .sessions
        .validate_until(body["token"].as_str().expect("token"))
        .await
        .expect("redis")
        .expect("alive");
    assert!(
        (after_use - expires.with_timezone(&chrono::Utc))
            .num_milliseconds()
            .abs()
            < 5
    );
}

/// Every event's level and message while the test runs (the test's thread only).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        if let Ok(mut v) = self.0.lock() {
            v.push((*event.metadata().level(), m.0));
        }
    }
}

impl Captured {
    fn errors(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(l, _)| *l == tracing::Level::ERROR)
                    .map(|(_, m)| m.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn client_mistakes_are_not_logged_as_errors_but_outages_are() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    let api = api().await;
    api.register(&creds("ada@example.com", "correct horse"))
        .await;
    let mistakes = [
        api.register(&creds("ada@example.com", "correct horse"))
            .await, // 409 taken
        api.register(&creds("not-an-email", "correct horse")).await, // 400
        api.login(&creds("ada@example.com", "wrong horse")).await,   // 401
        api.login(&creds("nobody@example.com", "correct horse"))
            .await, // 401
        api.login("{").await,                                        // 400
        api.logout(Some("ofs_nope")).await,                          // 401
    ];
    for (status, body) in &mistakes {
        assert!((400..500).contains(status), "{status} {body}");
    }
    assert_eq!(
        captured.errors(),
        Vec::<String>::new(),
        "4xx logged at ERROR"
    );
    let seen = captured.0.lock().map(|v| v.len()).unwrap_or(0);
    assert!(seen > 0, "the refusals are still logged, below ERROR");

    // A real outage (Redis unreachable) is a 503 and an ERROR line.
    let env = TestEnv::with_config(|c| c.redis_url = "redis://127.0.0.1:1".into()).await;
    env.migrate(identity::SCHEMA, &identity::MIGRATOR).await;
    let login = identity::functions::login(&env.ctx);
    let (status, _) = call(
        &login,
        "POST",
        "/sessions",
        "POST /sessions",
        Some(&creds("ada@example.com", "correct horse")),
        None,
    )
    .await;
    assert_eq!(status, 503);
    assert!(!captured.errors().is_empty(), "a 5xx is logged at ERROR");
}

#[tokio::test]
async fn a_new_user_is_a_customer_and_a_grant_makes_the_next_login_an_admin_and_ends_old_sessions()
{
    use shared::session::Role;
    let api = api().await;
    api.register(&creds("root@example.com", "correct horse"))
        .await;
    let (_, body) = api.login(&creds("root@example.com", "correct horse")).await;
    let before = body["token"].as_str().expect("token").to_string();
    let session = api.env.ctx.sessions.validate(&before).await.expect("redis");
    assert_eq!(session.expect("live").role, Role::Customer);
    let customer_req = {
        let mut r = shared::http::request("GET", "/admin/x", "GET /admin/x");
        r.headers.insert(
            "authorization",
            format!("Bearer {before}").parse().expect("header"),
        );
        r
    };
    let refused = shared::http::authenticate_admin(&api.env.ctx.sessions, &customer_req)
        .await
        .expect_err("a customer is no admin");
    assert_eq!(refused.status, 403);

    let pool = &api.env.ctx.pool;
    let sessions = &api.env.ctx.sessions;
    assert!(
        !identity::set_role(pool, sessions, "nobody@example.com", Role::Admin)
            .await
            .expect("db"),
        "an unknown e-mail is reported, not granted"
    );
    assert!(
        identity::set_role(pool, sessions, "ROOT@example.com", Role::Admin)
            .await
            .expect("db")
    );
    assert_eq!(
        sessions.validate(&before).await.expect("redis"),
        None,
        "the session from before the grant keeps no stale role: it is gone"
    );
    let (_, body) = api.login(&creds("root@example.com", "correct horse")).await;
    let token = body["token"].as_str().expect("token");
    let session = sessions
        .validate(token)
        .await
        .expect("redis")
        .expect("live");
    assert_eq!(session.role, Role::Admin);
    let mut req = shared::http::request("GET", "/admin/x", "GET /admin/x");
    req.headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let admin = shared::http::authenticate_admin(sessions, &req)
        .await
        .expect("an admin passes");
    assert_eq!(admin.email, "root@example.com");
    let anonymous = shared::http::request("GET", "/admin/x", "GET /admin/x");
    let refused = shared::http::authenticate_admin(sessions, &anonymous)
        .await
        .expect_err("no session");
    assert_eq!(refused.status, 401);

    // Revoking makes the user a customer again, with the same logout.
    assert!(
        identity::set_role(pool, sessions, "root@example.com", Role::Customer)
            .await
            .expect("db")
    );
    assert_eq!(sessions.validate(token).await.expect("redis"), None);
}
