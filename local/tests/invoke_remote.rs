//! `--invoke-url`: the runner calls a Lambda emulator through the Invoke API
//! (`POST /2015-03-31/functions/<name>/invocations`, as `cargo lambda watch` serves it) with
//! the same event JSON, takes its answer, and treats a function error as a failure.
//! A stand-in emulator on loopback plays the function.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn invocations(
    State(seen): State<Seen>,
    Path(function): Path<String>,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap, String) {
    let event: Value = serde_json::from_slice(&body).expect("the event is JSON");
    seen.lock()
        .expect("lock")
        .push((function.clone(), event.clone()));
    let mut headers = HeaderMap::new();
    if function == "broken" {
        // What the emulator and AWS answer when the handler returned an error.
        headers.insert("x-amz-function-error", "Unhandled".parse().expect("header"));
        let body = json!({"errorType": "&anyhow::Error", "errorMessage": "database down"});
        return (StatusCode::OK, headers, body.to_string());
    }
    (
        StatusCode::OK,
        headers,
        json!({"echo": event, "function": function}).to_string(),
    )
}

async fn emulator() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{function}/invocations",
            post(invocations),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/"), seen)
}

#[tokio::test]
async fn a_remote_target_posts_the_event_to_the_functions_invoke_url_and_returns_its_answer() {
    let (base, seen) = emulator().await;
    let target = local::invoke::Target::remote(&base, "order-get");
    let event = json!({"version": "2.0", "routeKey": "GET /orders/{id}"});
    let answer = target.invoke(event.clone()).await.expect("answer");
    assert_eq!(answer["function"], "order-get");
    assert_eq!(answer["echo"], event);
    assert_eq!(
        seen.lock().expect("lock").as_slice(),
        &[("order-get".to_string(), event)]
    );
}

#[tokio::test]
async fn a_function_error_from_the_emulator_is_a_failed_invocation() {
    let (base, _) = emulator().await;
    let target = local::invoke::Target::remote(&base, "broken");
    let err = target
        .invoke(json!({"eventSource": "aws:rmq"}))
        .await
        .expect_err("a function error fails the invocation (the batch goes back)");
    assert!(err.contains("database down"), "{err}");
}

#[tokio::test]
async fn an_unreachable_emulator_is_a_failed_invocation_not_a_hang() {
    // Bind and drop: a loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let target = local::invoke::Target::remote(&format!("http://127.0.0.1:{port}"), "order-get");
    let err = target.invoke(json!({})).await.expect_err("refused");
    assert!(err.contains("invoke http://127.0.0.1:"), "{err}");
    assert!(local::invoke::REMOTE_INVOKE_TIMEOUT.as_secs() >= 30);
}
