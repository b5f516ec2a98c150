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
    let mut req = shared::http::request(method, path, route);
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
    (status, body)
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
