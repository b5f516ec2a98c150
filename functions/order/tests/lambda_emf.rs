//! The function binaries as Lambda runs them: each started against a stand-in for the
//! Lambda Runtime API, handed one event, and read for the CloudWatch Embedded Metric Format
//! lines it writes to stdout at the end of the invocation (nothing scrapes a Lambda).
#![allow(clippy::unwrap_used)]

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio::sync::{Mutex, mpsc};

/// The Runtime API: hands out `event` once, then holds the next poll open; reports the
/// function's answer (or error) on the channel.
#[derive(Clone)]
struct RuntimeApi {
    event: Arc<Mutex<Option<Value>>>,
    answers: mpsc::UnboundedSender<Result<Value, Value>>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    let Some(event) = api.event.lock().await.take() else {
        // The second poll: the test kills the process before this ever answers.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    for (k, v) in [
        (
            "lambda-runtime-aws-request-id",
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd".to_string(),
        ),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:eu-west-1:000000000000:function:prod-fn".to_string(),
        ),
        ("content-type", "application/json".to_string()),
    ] {
        headers.insert(k, v.parse().unwrap());
    }
    (headers, event.to_string())
}

async fn response(State(api): State<RuntimeApi>, body: String) -> &'static str {
    let _ = api
        .answers
        .send(Ok(serde_json::from_str(&body).unwrap_or(Value::Null)));
    ""
}

async fn error(State(api): State<RuntimeApi>, body: String) -> &'static str {
    let _ = api
        .answers
        .send(Err(serde_json::from_str(&body).unwrap_or(Value::Null)));
    ""
}

/// Runs `binary` for one invocation of `event`; returns its answer and its EMF documents.
async fn invoke_binary(
    binary: &str,
    env: &shared::testing::TestEnv,
    event: Value,
) -> (Result<Value, Value>, Vec<Value>) {
    let (tx, mut answers) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        event: Arc::new(Mutex::new(Some(event))),
        answers: tx,
    };
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "prod-fn")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/prod-fn")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/27/[$LATEST]0")
        .env("DATABASE_URL", &env.database_url)
        .env("ORDERFLOW_PREFIX", &env.prefix)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), answers.recv())
        .await
        .expect("the function answers within 30 s")
        .unwrap();
    // The EMF lines are written before the answer is posted; give the pipe a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().await.unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    server.abort();
    let docs = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    (answer, docs)
}

/// The document holding `metric` with these dimension values.
fn find<'a>(docs: &'a [Value], metric: &str, dims: &[(&str, &str)]) -> &'a Value {
    docs.iter()
        .find(|d| d.get(metric).is_some() && dims.iter().all(|(k, v)| d[*k] == *v))
        .unwrap_or_else(|| panic!("no EMF document with {metric} {dims:?} in {docs:#?}"))
}

fn sample_event(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/order")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_queue_function_writes_its_invocation_batch_and_message_metrics_as_emf() {
    let env = shared::testing::TestEnv::new().await;
    env.migrate(order::SCHEMA, &order::MIGRATOR).await;
    let (answer, docs) = invoke_binary(
        env!("CARGO_BIN_EXE_order-timeline"),
        &env,
        sample_event("order-timeline.json"),
    )
    .await;
    let report = answer.expect("the batch succeeds");
    assert_eq!(report["processed"], 2, "{report}");

    // Dimensions name the function by its binary, as the local runner's labels do.
    let inv = find(
        &docs,
        "Invocations",
        &[("Function", "order-timeline"), ("Outcome", "ok")],
    );
    assert_eq!(inv["Invocations"], 1.0);
    let directive = &inv["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Orderflow");
    assert!(
        directive["Dimensions"][0]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "Function")
    );
    assert!(inv["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    let msgs = find(
        &docs,
        "Messages",
        &[("Function", "order-timeline"), ("Outcome", "processed")],
    );
    assert_eq!(msgs["Messages"], 2.0);
    let batch = find(&docs, "BatchSize", &[("Function", "order-timeline")]);
    assert_eq!(batch["BatchSize"], serde_json::json!([2.0]));
    assert_eq!(batch["HandlerDuration"].as_array().unwrap().len(), 2);
    assert_eq!(batch["BatchDuration"].as_array().unwrap().len(), 1);
    let units: Vec<(String, String)> = batch["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap().into(),
                m["Unit"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        units.contains(&("HandlerDuration".into(), "Seconds".into())),
        "{units:?}"
    );
    assert!(
        units.contains(&("BatchSize".into(), "Count".into())),
        "{units:?}"
    );
    let consumed = find(
        &docs,
        "EventsConsumed",
        &[
            ("Function", "order-timeline"),
            ("RoutingKey", "stock.released"),
        ],
    );
    assert_eq!(consumed["EventsConsumed"], 1.0);
}

#[tokio::test]
async fn an_outbox_relay_emits_its_outbox_lag_for_the_alarms() {
    let env = shared::testing::TestEnv::new().await;
    env.migrate(order::SCHEMA, &order::MIGRATOR).await;
    let (answer, docs) = invoke_binary(
        env!("CARGO_BIN_EXE_order-relay"),
        &env,
        sample_event("order-expire.json"),
    )
    .await;
    let answer = answer.expect("the relay runs");
    assert_eq!(answer["published"], 0, "{answer}");
    // What the template's alarms read: namespace Orderflow, OutboxLagSeconds by Service.
    let lag = find(&docs, "OutboxLagSeconds", &[("Service", "order")]);
    assert_eq!(lag["OutboxLagSeconds"], 0.0);
    assert_eq!(
        lag["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["Service"]])
    );
    find(
        &docs,
        "Invocations",
        &[("Function", "order-relay"), ("Outcome", "ok")],
    );
}

#[tokio::test]
async fn the_expiry_schedule_emits_orders_by_state_and_the_oldest_pending_order() {
    let env = shared::testing::TestEnv::new().await;
    env.migrate(order::SCHEMA, &order::MIGRATOR).await;
    let (answer, docs) = invoke_binary(
        env!("CARGO_BIN_EXE_order-expire"),
        &env,
        sample_event("order-expire.json"),
    )
    .await;
    assert_eq!(answer.expect("expiry runs")["expired"], 0);
    let pending = find(
        &docs,
        "Orders",
        &[("Status", "PENDING"), ("Reason", "none")],
    );
    assert_eq!(pending["Orders"], 0.0);
    find(&docs, "OldestPendingOrderAge", &[]);
}
