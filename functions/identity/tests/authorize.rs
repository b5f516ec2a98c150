//! The HTTP API's Lambda authorizer against the real local Redis, fed API Gateway's
//! REQUEST events (payload 2.0): a live session is allowed with its user id as context,
//! anything else is denied, and a session store that cannot be asked fails the
//! invocation (API Gateway answers 500 and caches nothing) rather than denying.

use serde_json::{Value, json};
use shared::session::Session;
use shared::testing::TestEnv;

/// An authorizer event as API Gateway sends it for `POST /orders`.
fn event(authorization: Option<&str>) -> Value {
    let mut e = json!({
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:eu-west-1:123456789012:abcdef123/$default/POST/orders",
        "routeKey": "POST /orders",
        "rawPath": "/orders",
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef123",
            "domainName": "abcdef123.execute-api.eu-west-1.amazonaws.com",
            "http": {"method": "POST", "path": "/orders", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "curl/8"},
            "requestId": "req-1",
            "routeKey": "POST /orders",
            "stage": "$default",
            "time": "02/Dec/2026:10:45:00 +0000",
            "timeEpoch": 1_796_208_300_000_i64,
        },
    });
    if let Some(a) = authorization {
        e["identitySource"] = json!([a]);
        e["headers"]["authorization"] = json!(a);
    }
    e
}

#[tokio::test]
async fn a_live_session_is_allowed_with_its_user_and_anything_else_is_denied() {
    let env = TestEnv::new().await;
    let authorize = identity::authorize::authorize(&env.ctx);
    let user_id = uuid::Uuid::new_v4();
    let (token, _) = env
        .ctx
        .sessions
        .create(&Session {
            user_id,
            email: "ada@example.com".into(),
            role: Default::default(),
        })
        .await
        .expect("session");

    let allowed = authorize
        .invoke(event(Some(&format!("Bearer {token}"))))
        .await
        .expect("answered");
    assert_eq!(
        allowed,
        json!({"isAuthorized": true, "context": {"user_id": user_id.to_string(), "role": "customer"}})
    );
    assert!(
        !allowed.to_string().contains("ada@"),
        "no e-mail in the context"
    );

    for denied in [
        event(None),
        event(Some("Bearer ofs_not-a-session")),
        event(Some(&format!("Basic {token}"))),
    ] {
        assert_eq!(
            authorize.invoke(denied).await.expect("answered"),
            json!({"isAuthorized": false})
        );
    }

    assert!(env.ctx.sessions.revoke(&token).await.expect("revoke"));
    assert_eq!(
        authorize
            .invoke(event(Some(&format!("Bearer {token}"))))
            .await
            .expect("answered"),
        json!({"isAuthorized": false}),
        "a logged-out token is denied"
    );
}

#[tokio::test]
async fn without_redis_the_authorizer_fails_instead_of_denying() {
    let env = TestEnv::with_config(|c| c.redis_url = "redis://127.0.0.1:1".into()).await;
    let authorize = identity::authorize::authorize(&env.ctx);
    let err = authorize
        .invoke(event(Some("Bearer ofs_whatever")))
        .await
        .expect_err("session store down");
    assert!(
        err.to_string().contains("session store unavailable"),
        "{err}"
    );
}
