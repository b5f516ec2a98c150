//! Every file under `events/` is a trigger payload for the function it is named after: it
//! parses as that trigger's event, its messages decode to keys bound to that function, and
//! fed to the function's handler it is handled without an infrastructure failure.
//! `ORDERFLOW_BLESS_EVENTS=1 cargo test -p local --test events` rewrites the samples.

use serde_json::{Value, json};
use shared::contracts::*;
use shared::{Encoding, Envelope};
use std::path::{Path, PathBuf};

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

const ORDER_ID: &str = "0193a5b0-7c1e-7d2a-9f3e-4b5c6d7e8f90";
const USER_ID: &str = "0193a5b0-0000-7000-8000-00000000a11c";

fn line(p: &str, q: u32, price: i64) -> OrderLine {
    OrderLine {
        product_id: p.into(),
        quantity: q,
        unit_price_cents: price,
    }
}

fn created() -> Envelope {
    Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: ORDER_ID.into(),
            user_id: USER_ID.into(),
            customer_email: "alice@example.com".into(),
            items: vec![line("sku-coffee", 2, 2490), line("sku-mug", 1, 1200)],
            total_cents: 6180,
            currency: "EUR".into(),
            payment_token: "tok_visa".into(),
        }),
        None,
    )
}

fn rmq(queue: &str, envs: &[(Envelope, Encoding)]) -> Value {
    let names = shared::topology::Names::default();
    let msgs = envs
        .iter()
        .map(|(e, enc)| {
            let out = shared::publisher::OutMessage::event(&names, e, *enc);
            shared::rmq::message_from_amqp(
                &shared::publisher::amqp_properties(&out),
                &out.body,
                false,
            )
        })
        .collect();
    serde_json::to_value(shared::rmq::event_for_queue(queue, "/", msgs)).expect("json")
}

fn http(
    method: &str,
    path: &str,
    route: &str,
    params: Value,
    body: Option<Value>,
    bearer: bool,
) -> Value {
    let mut headers = json!({"content-type": "application/json", "host": "127.0.0.1:3000", "user-agent": "curl/8.5.0"});
    if bearer {
        headers["authorization"] = json!("Bearer ofs_sample-token-from-POST-sessions");
    }
    let mut ev = json!({
        "version": "2.0", "routeKey": format!("{method} {route}"), "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {"accountId": "000000000000", "apiId": "local", "domainName": "127.0.0.1",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "curl/8.5.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "routeKey": format!("{method} {route}"), "stage": "$default",
            "time": "27/Nov/2026:10:00:00 +0000", "timeEpoch": 1795773600000u64},
        "isBase64Encoded": false
    });
    if params != Value::Null {
        ev["pathParameters"] = params;
    }
    if let Some(b) = body {
        ev["body"] = json!(b.to_string());
    }
    ev
}

/// (path under events/, payload)
fn samples() -> Vec<(&'static str, Value)> {
    let c = created();
    let reserved = Envelope::new(
        Payload::StockReserved(StockReserved {
            order_id: ORDER_ID.into(),
            items: vec![line("sku-coffee", 2, 2490), line("sku-mug", 1, 1200)],
        }),
        Some(&c),
    );
    let paid = Envelope::new(
        Payload::PaymentProcessed(PaymentProcessed {
            order_id: ORDER_ID.into(),
            status: PaymentStatus::Success as i32,
            payment_id: "0193a5b0-1111-7000-8000-000000000001".into(),
            amount_cents: 6180,
            currency: "EUR".into(),
            decline_code: String::new(),
            last4: "4242".into(),
        }),
        Some(&c),
    );
    let confirmed = Envelope::new(
        Payload::OrderConfirmed(OrderConfirmed {
            order_id: ORDER_ID.into(),
            user_id: USER_ID.into(),
            customer_email: "alice@example.com".into(),
            total_cents: 6180,
            currency: "EUR".into(),
        }),
        Some(&paid),
    );
    let cancelled = Envelope::new(
        Payload::OrderCancelled(OrderCancelled {
            order_id: ORDER_ID.into(),
            user_id: USER_ID.into(),
            customer_email: "alice@example.com".into(),
            reason: CancelReason::PaymentDeclined as i32,
        }),
        Some(&c),
    );
    let stock_released = Envelope::new(
        Payload::StockReleased(StockReleased {
            order_id: ORDER_ID.into(),
            items: vec![line("sku-coffee", 2, 2490), line("sku-mug", 1, 1200)],
        }),
        Some(&cancelled),
    );
    let product = Envelope::new(
        Payload::ProductUpdated(ProductUpdated {
            product_id: "sku-coffee".into(),
            name: "Single-origin coffee beans 1 kg".into(),
            price_cents: 2490,
            currency: "EUR".into(),
            version: 1,
        }),
        None,
    );
    let j = Encoding::Json;
    let scheduled = json!({"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event", "source": "aws.events", "account": "000000000000", "time": "2026-11-27T10:00:00Z", "region": "eu-west-1", "resources": ["arn:aws:events:eu-west-1:000000000000:rule/order-expire"], "detail": {}});
    let creds = json!({"email": "alice@example.com", "password": "correct horse battery"});
    vec![
        (
            "identity/identity-register.json",
            http(
                "POST",
                "/users",
                "/users",
                Value::Null,
                Some(creds.clone()),
                false,
            ),
        ),
        (
            "identity/identity-login.json",
            http(
                "POST",
                "/sessions",
                "/sessions",
                Value::Null,
                Some(creds),
                false,
            ),
        ),
        (
            "identity/identity-logout.json",
            http(
                "DELETE",
                "/sessions/current",
                "/sessions/current",
                Value::Null,
                None,
                true,
            ),
        ),
        (
            "inventory/inventory-reserve.json",
            rmq("inventory-reserve", &[(c.clone(), j)]),
        ),
        (
            "inventory/inventory-reserve-protobuf.json",
            rmq("inventory-reserve", &[(c.clone(), Encoding::Protobuf)]),
        ),
        (
            "inventory/inventory-release.json",
            rmq("inventory-release", &[(cancelled.clone(), j)]),
        ),
        (
            "inventory/inventory-products.json",
            http("GET", "/products", "/products", Value::Null, None, false),
        ),
        (
            "inventory/inventory-products-stock.json",
            http(
                "GET",
                "/products/sku-coffee/stock",
                "/products/{id}/stock",
                json!({"id": "sku-coffee"}),
                None,
                false,
            ),
        ),
        (
            "payment/payment-process.json",
            rmq("payment-process", &[(c.clone(), j)]),
        ),
        (
            "payment/payment-settle-confirmed.json",
            rmq("payment-settle", &[(confirmed.clone(), j)]),
        ),
        (
            "payment/payment-settle-cancelled.json",
            rmq("payment-settle", &[(cancelled.clone(), j)]),
        ),
        (
            "notification/notification-send.json",
            rmq("notification-send", &[(c.clone(), j), (confirmed, j)]),
        ),
        (
            "order/order-create.json",
            http(
                "POST",
                "/orders",
                "/orders",
                Value::Null,
                Some(
                    json!({"items": [{"product_id": "sku-coffee", "quantity": 2}, {"product_id": "sku-mug", "quantity": 1}], "payment_token": "tok_visa"}),
                ),
                true,
            ),
        ),
        (
            "order/order-get.json",
            http(
                "GET",
                &format!("/orders/{ORDER_ID}"),
                "/orders/{id}",
                json!({"id": ORDER_ID}),
                None,
                true,
            ),
        ),
        (
            "order/order-saga.json",
            rmq("order-saga", &[(reserved, j), (paid, j)]),
        ),
        (
            "order/order-catalog.json",
            rmq("order-catalog", &[(product, j)]),
        ),
        ("order/order-expire.json", scheduled),
        (
            "order/order-timeline.json",
            rmq("order-timeline", &[(c.clone(), j), (stock_released, j)]),
        ),
    ]
}

#[test]
fn sample_events_are_up_to_date_when_blessed() {
    if std::env::var_os("ORDERFLOW_BLESS_EVENTS").is_none() {
        return;
    }
    for (path, value) in samples() {
        let full = events_dir().join(path);
        std::fs::create_dir_all(full.parent().expect("dir")).expect("mkdir");
        std::fs::write(
            &full,
            serde_json::to_string_pretty(&value).expect("json") + "\n",
        )
        .expect("write");
    }
}

fn all_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(events_dir()).expect("events/ exists") {
        let dir = dir.expect("entry").path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).expect("dir") {
                let f = f.expect("entry").path();
                if f.extension().is_some_and(|e| e == "json") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    files
}

/// The template function a sample file is named after (`<binary>.json` or `<binary>-<case>.json`).
fn function_for(
    file: &Path,
    specs: &[local::template::FunctionSpec],
) -> local::template::FunctionSpec {
    let stem = file.file_stem().and_then(|s| s.to_str()).expect("name");
    specs
        .iter()
        .filter(|s| stem == s.binary || stem.starts_with(&format!("{}-", s.binary)))
        .max_by_key(|s| s.binary.len())
        .unwrap_or_else(|| {
            panic!(
                "{} is not named after a function of template.yaml",
                file.display()
            )
        })
        .clone()
}

#[tokio::test]
async fn every_sample_event_parses_decodes_and_is_handled_by_its_function() {
    use local::template::Trigger;
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let files = all_files();
    assert!(
        files.len() >= 14,
        "one sample per trigger at least, found {}",
        files.len()
    );
    let mut protobuf_seen = false;
    let env = shared::testing::TestEnv::new().await;
    local::registry::migrate_all(&env.database_url)
        .await
        .expect("migrate");
    for file in &files {
        let spec = function_for(file, &specs);
        let value: Value = serde_json::from_str(&std::fs::read_to_string(file).expect("read"))
            .expect("valid JSON");
        let messages = match &spec.triggers[0] {
            Trigger::Mq { routing_keys, .. } => {
                let ev: shared::rmq::RmqEvent =
                    serde_json::from_value(value.clone()).expect("aws:rmq event");
                for (_, m) in ev.messages() {
                    let decoded = shared::runner::decode(m)
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    assert!(
                        routing_keys
                            .iter()
                            .any(|k| shared::topology::topic_matches(k, &decoded.event_type)),
                        "{}: {} is not bound to {}",
                        file.display(),
                        decoded.event_type,
                        spec.binary
                    );
                    protobuf_seen |= m.basic_properties.content_type.as_deref()
                        == Some(shared::envelope::CONTENT_TYPE_PROTOBUF);
                }
                Some(ev.len())
            }
            Trigger::Http { .. } => {
                let req: shared::http::Request =
                    serde_json::from_value(value.clone()).expect("HTTP API v2 event");
                let routes: Vec<String> = spec
                    .triggers
                    .iter()
                    .filter_map(|t| match t {
                        Trigger::Http { method, path } => Some(format!("{method} {path}")),
                        _ => None,
                    })
                    .collect();
                assert!(
                    routes.contains(&req.route_key.clone().unwrap_or_default()),
                    "{}: route {:?} not in {routes:?}",
                    file.display(),
                    req.route_key
                );
                None
            }
            Trigger::Schedule { .. } => None,
        };
        let ctor = local::registry::find(&spec.binary).expect("registered");
        let answer = ctor(&env.ctx)
            .invoke(value)
            .await
            .unwrap_or_else(|e| panic!("{} failed: {e}", file.display()));
        match messages {
            Some(n) => {
                let report: shared::runner::BatchReport =
                    serde_json::from_value(answer).expect("batch report");
                assert_eq!(
                    report.processed + report.duplicates + report.parked.len(),
                    n,
                    "{}: {report:?}",
                    file.display()
                );
            }
            None if answer.get("statusCode").is_some() => {
                let status = answer["statusCode"].as_u64().expect("status");
                assert!(
                    status < 500,
                    "{}: answered {status}: {answer}",
                    file.display()
                );
            }
            None => {}
        }
    }
    assert!(
        protobuf_seen,
        "at least one sample carries a protobuf payload"
    );
}
