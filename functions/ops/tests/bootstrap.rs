//! The bootstrap custom resource against the real local Postgres and RabbitMQ, with a local
//! HTTP server standing in for CloudFormation's pre-signed response URL: a Create on a
//! database that does not exist yet and a broker without this stack's topology answers
//! SUCCESS with everything in place, an Update does it again (idempotent), a Delete deletes
//! nothing, and a broker that cannot be reached is a FAILED with the reason.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{Value, json};
use shared::Config;
use sqlx::Connection as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the stand-in response URL received: (content type, body).
type Received = Arc<Mutex<Vec<(String, Value)>>>;

async fn response_url() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(r): State<Received>, headers: HeaderMap, body: Bytes| async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("<none>")
                    .to_string();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Ok(mut r) = r.lock() {
                    r.push((ct, body));
                }
                ""
            },
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    // Shaped like the real thing: an S3 object path and a query of signature parameters.
    let url = format!(
        "http://127.0.0.1:{port}/cloudformation-custom-resource-response-euwest1/\
         arn%3Aaws%3Acloudformation%3Aeu-west-1%3A123456789012%3Astack/orderflow/1%7CBootstrap%7Cr?\
         X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261202T104500Z&X-Amz-Expires=7200&X-Amz-Signature=abc"
    );
    (url, received)
}

fn event(kind: &str, response_url: &str, physical: Option<&str>, seed: bool) -> Value {
    let mut e = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:orderflow-ops-bootstrap",
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/orderflow/4b7c3a50-d0a1-11f0-9c2e-0a1b2c3d4e5f",
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "LogicalResourceId": "Bootstrap",
        "ResourceType": "Custom::Bootstrap",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:orderflow-ops-bootstrap",
            "FunctionVersion": "3",
            "SeedDemoCatalog": seed.to_string(),
        },
    });
    if let Some(p) = physical {
        e["PhysicalResourceId"] = json!(p);
    }
    if kind == "Update" {
        e["OldResourceProperties"] = e["ResourceProperties"].clone();
    }
    e
}

/// A config on a database that does not exist yet and a fresh prefix.
fn config(amqp_url: Option<&str>) -> (Config, String) {
    let admin = shared::testing::admin_url();
    let name = format!("of_test_{}", uuid::Uuid::new_v4().simple());
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin);
    let database_url = format!("{base}/{name}");
    let prefix = shared::testing::random_prefix();
    let cfg = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(database_url.clone()),
        "ORDERFLOW_PREFIX" => Some(prefix.clone()),
        "AMQP_URL" => amqp_url
            .map(str::to_string)
            .or_else(|| std::env::var("AMQP_URL").ok()),
        "REDIS_URL" => std::env::var("REDIS_URL").ok(),
        _ => None,
    })
    .expect("config");
    (cfg, name)
}

async fn drop_database(name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(&shared::testing::admin_url()).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
}

/// Queues of the template that exist on the broker under this config's prefix.
async fn existing_queues(cfg: &Config) -> usize {
    let specs = ops::template::parse(ops::template::EMBEDDED).expect("template");
    let names = shared::topology::Names::new(cfg.prefix.clone());
    let conn = shared::publisher::connect(&cfg.amqp_url, "bootstrap-test")
        .await
        .expect("broker");
    let mut found = 0;
    for q in ops::template::queue_specs(&specs) {
        for name in [names.queue(&q.queue), names.dead_letter_queue(&q.queue)] {
            // A passive declare of a missing queue closes its channel: one channel each.
            let ch = conn.create_channel().await.expect("channel");
            let probe = ch
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            if probe.is_ok() {
                found += 1;
                let _ = ch.close(200, "probed".into()).await;
            }
        }
    }
    let _ = conn.close(200, "probed".into()).await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_on_a_fresh_database_and_broker_succeeds_update_repeats_it_delete_keeps_everything()
{
    let (url, received) = response_url().await;
    let (cfg, db) = config(None);
    let http = reqwest::Client::new();
    let specs = ops::template::parse(ops::template::EMBEDDED).expect("template");
    let want_queues = 2 * ops::template::queue_specs(&specs).len();
    assert_eq!(existing_queues(&cfg).await, 0, "a fresh broker prefix");

    let sent = ops::bootstrap::handle(
        event("Create", &url, None, true),
        Ok(cfg.clone()),
        Duration::from_secs(120),
        &http,
    )
    .await
    .expect("answered");
    assert_eq!(sent["Status"], "SUCCESS", "{sent}");
    let physical = sent["PhysicalResourceId"].as_str().expect("id").to_string();
    {
        let got = received.lock().expect("lock").clone();
        assert_eq!(got.len(), 1, "exactly one answer");
        assert_eq!(got[0].1, sent, "the response URL got what was sent");
        // The pre-signed URL signs no content type: none may be sent.
        assert_eq!(got[0].0, "");
        assert_eq!(got[0].1["LogicalResourceId"], "Bootstrap");
        assert_eq!(
            got[0].1["StackId"],
            event("Create", &url, None, true)["StackId"]
        );
    }

    // Every service's migrations ran, the topology exists, the catalog was seeded.
    let mut conn = sqlx::PgConnection::connect(&cfg.database_url)
        .await
        .expect("the bootstrap created the database");
    let migrated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables \
         WHERE table_name = '_sqlx_migrations' AND table_schema = ANY($1)",
    )
    .bind(ops::prepare::SCHEMAS.map(str::to_string).to_vec())
    .fetch_one(&mut conn)
    .await
    .expect("query");
    assert_eq!(migrated, ops::prepare::SCHEMAS.len() as i64);
    assert_eq!(existing_queues(&cfg).await, want_queues);
    let products: i64 = sqlx::query_scalar("SELECT count(*) FROM inventory.products")
        .fetch_one(&mut conn)
        .await
        .expect("products");
    assert_eq!(products, ops::catalog::demo().len() as i64);
    // Sold stock must survive an Update: the catalog is seeded once.
    sqlx::query(
        "UPDATE inventory.products SET available = available - 1 WHERE product_id = 'sku-limited'",
    )
    .execute(&mut conn)
    .await
    .expect("sell one");

    let again = ops::bootstrap::handle(
        event("Update", &url, Some(&physical), true),
        Ok(cfg.clone()),
        Duration::from_secs(120),
        &http,
    )
    .await
    .expect("answered");
    assert_eq!(again["Status"], "SUCCESS", "{again}");
    assert_eq!(again["PhysicalResourceId"], physical.as_str());
    let left: i32 = sqlx::query_scalar(
        "SELECT available FROM inventory.products WHERE product_id = 'sku-limited'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("stock");
    assert_eq!(left, 9, "an Update does not re-seed");

    let deleted = ops::bootstrap::handle(
        event("Delete", &url, Some(&physical), true),
        Err("a Delete needs no configuration".into()),
        Duration::from_secs(5),
        &http,
    )
    .await
    .expect("answered");
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted}");
    assert_eq!(
        existing_queues(&cfg).await,
        want_queues,
        "Delete keeps the topology"
    );
    assert_eq!(received.lock().expect("lock").len(), 3);

    let _ = conn.close().await;
    ops::prepare::delete_topology(&cfg, &specs)
        .await
        .expect("cleanup");
    drop_database(&db).await;
}

#[tokio::test]
async fn an_unreachable_broker_is_answered_failed_with_the_reason() {
    let (url, received) = response_url().await;
    let (cfg, db) = config(Some("amqp://guest:sesame@127.0.0.1:1/%2f"));
    let sent = ops::bootstrap::handle(
        event("Create", &url, None, false),
        Ok(cfg),
        Duration::from_secs(60),
        &reqwest::Client::new(),
    )
    .await
    .expect("answered");
    assert_eq!(sent["Status"], "FAILED", "{sent}");
    let reason = sent["Reason"].as_str().expect("reason");
    assert!(
        reason.contains("cannot reach the broker at amqp://guest:***@127.0.0.1:1"),
        "{reason}"
    );
    assert!(!reason.contains("sesame"), "{reason}");
    assert_eq!(received.lock().expect("lock").len(), 1);
    drop_database(&db).await;
}

#[tokio::test]
async fn work_that_outlives_its_budget_is_answered_failed_in_time() {
    // A "database" that accepts connections and never says a word: the work hangs, the
    // budget ends it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let (url, received) = response_url().await;
    let (mut cfg, _db) = config(None);
    cfg.database_url = format!("postgres://postgres@127.0.0.1:{port}/never");
    let started = std::time::Instant::now();
    let sent = ops::bootstrap::handle(
        event("Create", &url, None, false),
        Ok(cfg),
        Duration::from_millis(500),
        &reqwest::Client::new(),
    )
    .await
    .expect("answered");
    assert_eq!(sent["Status"], "FAILED", "{sent}");
    assert!(
        sent["Reason"]
            .as_str()
            .is_some_and(|r| r.contains("not done within")),
        "{sent}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(received.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn without_a_reachable_response_url_the_invocation_fails() {
    let (cfg, _db) = config(None);
    let e = event("Delete", "http://127.0.0.1:1/response", Some("x"), false);
    let err = ops::bootstrap::handle(e, Ok(cfg), Duration::from_secs(1), &reqwest::Client::new())
        .await
        .expect_err("nobody to tell");
    assert!(err.contains("could not be reached"), "{err}");
}
