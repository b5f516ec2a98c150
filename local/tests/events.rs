//! Every file under `events/` is a trigger payload for the function it is named after, and
//! is held to the contract: an `aws:rmq` sample's messages sit on that function's queue,
//! carry a type bound to it in template.yaml, decode to an envelope whose AMQP properties
//! agree with it, and re-encode through the contract types to the very bytes or JSON the
//! file carries (a renamed, missing or extra field fails); an HTTP sample's route and
//! method are the function's in template.yaml. Fed to its function in story order, each is
//! handled: processed (or a duplicate of what was processed just before), a 2xx answer, or
//! the error status the table below says it deliberately shows.
//! `ORDERFLOW_BLESS_EVENTS=1 cargo test -p local --test events` rewrites the samples.

#[path = "support/sample_contract.rs"]
mod sample_contract;

use sample_contract::{http_violations, rmq_violations};
use serde_json::{Value, json};
use shared::contracts::*;
use shared::{Encoding, Envelope};
use std::path::{Path, PathBuf};

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

const ORDER_ID: &str = "0193a5b0-7c1e-7d2a-9f3e-4b5c6d7e8f90";
/// The cancelled samples are about another order: one order cannot be both captured and
/// voided, so with one order id some sample would always be refused by its function.
const CANCELLED_ORDER_ID: &str = "0193a5b0-7c1e-7d2a-9f3e-4b5c6d7e8f91";
const USER_ID: &str = "0193a5b0-0000-7000-8000-00000000a11c";

fn line(p: &str, q: u32, price: i64) -> OrderLine {
    OrderLine {
        product_id: p.into(),
        quantity: q,
        unit_price_cents: price,
    }
}

fn created() -> Envelope {
    created_for(ORDER_ID)
}

fn created_for(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: order_id.into(),
            user_id: USER_ID.into(),
            customer_email: "alice@example.com".into(),
            items: vec![line("sku-coffee", 2, 2490), line("sku-mug", 1, 1200)],
            total_cents: 6180,
            currency: "EUR".into(),
            payment_token_sealed: shared::payment_token::TokenKeys::development()
                .seal(order_id, "tok_visa"),
            payment_ref: shared::payment_token::reference("tok_visa"),
            ..Default::default()
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
    let shipped = Envelope::new(
        Payload::OrderShipped(OrderShipped {
            order_id: ORDER_ID.into(),
            user_id: USER_ID.into(),
            customer_email: "alice@example.com".into(),
            carrier: "DHL".into(),
            tracking_number: "JD014600006281230001".into(),
            items: vec![line("sku-coffee", 2, 2490), line("sku-mug", 1, 1200)],
        }),
        Some(&confirmed),
    );
    let refund_requested = Envelope::new(
        Payload::RefundRequested(RefundRequested {
            order_id: ORDER_ID.into(),
            refund_id: "0193a5b0-2222-7000-8000-000000000001".into(),
            amount_cents: 1200,
            currency: "EUR".into(),
            items: vec![line("sku-mug", 1, 1200)],
            restock: true,
            reason: "arrived broken".into(),
            user_id: USER_ID.into(),
            customer_email: "alice@example.com".into(),
        }),
        Some(&shipped),
    );
    let cancelled = Envelope::new(
        Payload::OrderCancelled(OrderCancelled {
            order_id: CANCELLED_ORDER_ID.into(),
            user_id: USER_ID.into(),
            customer_email: "alice@example.com".into(),
            reason: CancelReason::PaymentDeclined as i32,
        }),
        Some(&created_for(CANCELLED_ORDER_ID)),
    );
    let stock_released = Envelope::new(
        Payload::StockReleased(StockReleased {
            order_id: CANCELLED_ORDER_ID.into(),
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
            ..Default::default()
        }),
        None,
    );
    // The payment service's answer to the admin's refund of the mug.
    let refunded = Envelope::new(
        Payload::PaymentRefunded(PaymentRefunded {
            order_id: ORDER_ID.into(),
            refund_id: "0193a5b0-2222-7000-8000-000000000001".into(),
            payment_id: "0193a5b0-1111-7000-8000-000000000001".into(),
            amount_cents: 1200,
            currency: "EUR".into(),
            gateway_refund_id: "re_sim_0193a5b033337000800000000000001".into(),
            user_id: USER_ID.into(),
            customer_email: "alice@example.com".into(),
        }),
        Some(&refund_requested),
    );
    let delivered = Envelope::new(
        Payload::OrderDelivered(OrderDelivered {
            order_id: ORDER_ID.into(),
            user_id: USER_ID.into(),
            customer_email: "alice@example.com".into(),
        }),
        Some(&shipped),
    );
    // A second refund the gateway refused, and the back office's stock events.
    let refund_failed = Envelope::new(
        Payload::PaymentRefundFailed(PaymentRefundFailed {
            order_id: ORDER_ID.into(),
            refund_id: "0193a5b0-2222-7000-8000-000000000002".into(),
            amount_cents: 6180,
            currency: "EUR".into(),
            reason: "exceeds_captured".into(),
        }),
        Some(&refunded),
    );
    let stock_adjusted = Envelope::new(
        Payload::StockAdjusted(StockAdjusted {
            product_id: "sku-mug".into(),
            adjustment_id: "delivery-2026-11-27".into(),
            delta: 24,
            available: 60,
            reason: "supplier delivery".into(),
        }),
        None,
    );
    let stock_low = Envelope::new(
        Payload::StockLow(StockLow {
            product_id: "sku-coffee".into(),
            available: 4,
            threshold: 5,
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
            "inventory/inventory-admin.json",
            http(
                "POST",
                "/admin/products",
                "/admin/products",
                Value::Null,
                Some(
                    json!({"product_id": "sku-teapot", "name": "Teapot", "price_cents": 3490, "currency": "EUR", "stock": 20, "low_stock_threshold": 5}),
                ),
                true,
            ),
        ),
        (
            "inventory/inventory-release-shipped.json",
            rmq("inventory-release", &[(shipped.clone(), j)]),
        ),
        (
            "inventory/inventory-release-refund.json",
            rmq("inventory-release", &[(refund_requested.clone(), j)]),
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
            "payment/payment-refund.json",
            rmq("payment-refund", &[(refund_requested, j)]),
        ),
        (
            "notification/notification-send-refunded.json",
            rmq("notification-send", &[(refunded, j)]),
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
        ("order/order-get-history.json", {
            let mut ev = http("GET", "/orders", "/orders", Value::Null, None, true);
            ev["rawQueryString"] = json!("limit=10&status=CONFIRMED");
            ev["queryStringParameters"] = json!({"limit": "10", "status": "CONFIRMED"});
            ev
        }),
        (
            "ops/ops-openapi.json",
            http(
                "GET",
                "/openapi.json",
                "/openapi.json",
                Value::Null,
                None,
                false,
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
        (
            "order/order-timeline-lifecycle.json",
            rmq(
                "order-timeline",
                &[
                    (shipped.clone(), j),
                    (delivered.clone(), j),
                    (refund_failed, j),
                    (stock_adjusted, j),
                    (stock_low, j),
                ],
            ),
        ),
        (
            "notification/notification-send-shipped.json",
            rmq("notification-send", &[(shipped.clone(), j), (delivered, j)]),
        ),
        (
            "order/order-cancel.json",
            http(
                "POST",
                &format!("/orders/{ORDER_ID}/cancel"),
                "/orders/{id}/cancel",
                json!({"id": ORDER_ID}),
                None,
                true,
            ),
        ),
        (
            "order/order-admin.json",
            http(
                "POST",
                &format!("/admin/orders/{ORDER_ID}/ship"),
                "/admin/orders/{id}/ship",
                json!({"id": ORDER_ID}),
                Some(json!({"carrier": "DHL", "tracking_number": "JD014600003SE"})),
                true,
            ),
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

/// Samples that deliberately show an error answer, and the status each must get: they
/// carry the placeholder token of `http()`, never a live session, to show the auth check.
/// Any other HTTP sample must answer 2xx.
const EXPECTED_ERRORS: &[(&str, u16)] = &[
    ("identity/identity-logout.json", 401),
    ("order/order-create.json", 401),
    ("order/order-get.json", 401),
    ("order/order-get-history.json", 401),
    ("order/order-cancel.json", 401),
    ("order/order-admin.json", 401),
    ("inventory/inventory-admin.json", 401),
];

/// The order the samples are fed in, each seeing what the ones before it left, as in the
/// flow: register before login, an order's reservation and payment before its saga, the
/// saga's confirmation before the capture. Every file under events/ is listed once.
const STORY: &[&str] = &[
    // The sample's token is not a live session: the authorizer denies it.
    "identity/identity-authorize.json",
    "identity/identity-register.json",
    "identity/identity-login.json",
    "identity/identity-logout.json",
    "inventory/inventory-products.json",
    "inventory/inventory-products-stock.json",
    "inventory/inventory-admin.json",
    "order/order-create.json",
    "order/order-get.json",
    "order/order-get-history.json",
    "ops/ops-openapi.json",
    "order/order-cancel.json",
    "order/order-admin.json",
    "order/order-catalog.json",
    "inventory/inventory-reserve.json",
    // The same order.created in protobuf: a duplicate of the one just processed.
    "inventory/inventory-reserve-protobuf.json",
    "payment/payment-process.json",
    "order/order-saga.json",
    "payment/payment-settle-confirmed.json",
    // A refund of part of the captured order, then its customer notification.
    "payment/payment-refund.json",
    "notification/notification-send.json",
    "notification/notification-send-refunded.json",
    "notification/notification-send-shipped.json",
    "order/order-timeline.json",
    "order/order-timeline-lifecycle.json",
    "payment/payment-settle-cancelled.json",
    "inventory/inventory-release.json",
    // The confirmed order ships, then a refund puts its mug back on sale.
    "inventory/inventory-release-shipped.json",
    "inventory/inventory-release-refund.json",
    "order/order-expire.json",
];

/// A sample's path under events/, as the tables write it.
fn relative(file: &Path) -> String {
    file.strip_prefix(events_dir())
        .unwrap_or(file)
        .to_string_lossy()
        .replace('\\', "/")
}

fn routes_of(spec: &local::template::FunctionSpec) -> Vec<String> {
    spec.triggers
        .iter()
        .filter_map(|t| match t {
            local::template::Trigger::Http { method, path, .. } => Some(format!("{method} {path}")),
            _ => None,
        })
        .collect()
}

/// The contract violations of one sample file, for the function it is named after.
fn sample_violations(
    file: &Path,
    value: &Value,
    specs: &[local::template::FunctionSpec],
) -> Vec<String> {
    use local::template::Trigger;
    let spec = function_for(file, specs);
    // A function without a trigger of its own: the HTTP API's authorizer (the only one with
    // a sample) gets API Gateway's REQUEST event, payload 2.0.
    let Some(trigger) = spec.triggers.first() else {
        let mut v = Vec::new();
        if value["type"] != "REQUEST" || value["version"] != "2.0" {
            v.push("not an HTTP API REQUEST authorizer event (payload 2.0)".to_string());
        }
        if !value["identitySource"].is_array() {
            v.push("no identitySource".to_string());
        }
        return v;
    };
    match trigger {
        Trigger::Mq {
            queue,
            routing_keys,
            ..
        } => rmq_violations(value, queue, routing_keys),
        Trigger::Http { .. } => http_violations(value, &routes_of(&spec)),
        Trigger::Schedule { .. } => {
            match serde_json::from_value::<aws_lambda_events::eventbridge::EventBridgeEvent>(
                value.clone(),
            ) {
                Ok(ev) if ev.detail_type == "Scheduled Event" => vec![],
                Ok(ev) => vec![format!("detail-type {:?}, not a schedule", ev.detail_type)],
                Err(e) => vec![format!("not an EventBridge event: {e}")],
            }
        }
    }
}

fn read(file: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("valid JSON")
}

#[test]
fn every_sample_event_holds_to_the_contract_and_to_its_trigger_in_the_template() {
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let files = all_files();
    let on_disk: Vec<String> = files.iter().map(|f| relative(f)).collect();
    let mut story: Vec<String> = STORY.iter().map(|s| s.to_string()).collect();
    story.sort();
    assert_eq!(on_disk, story, "every sample is fed once in STORY");
    for (file, _) in EXPECTED_ERRORS {
        assert!(on_disk.iter().any(|f| f == file), "{file} is not a sample");
    }
    let mut protobuf_seen = false;
    let mut violations = Vec::new();
    for file in &files {
        let value = read(file);
        protobuf_seen |= value
            .to_string()
            .contains(shared::envelope::CONTENT_TYPE_PROTOBUF);
        for v in sample_violations(file, &value, &specs) {
            violations.push(format!("{}: {v}", relative(file)));
        }
    }
    assert!(
        violations.is_empty(),
        "samples drifted from the contract or the template:\n{}",
        violations.join("\n")
    );
    assert!(
        protobuf_seen,
        "at least one sample carries a protobuf payload"
    );
}

/// A sample with its first message's JSON body changed by `edit`.
fn with_body(sample: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut sample = sample.clone();
    let queues = sample["rmqMessagesByQueue"]
        .as_object_mut()
        .expect("rmqMessagesByQueue");
    let message = queues
        .values_mut()
        .next()
        .and_then(|msgs| msgs.get_mut(0))
        .expect("a message");
    let data = message["data"].as_str().expect("data");
    let mut body: Value =
        serde_json::from_slice(&engine.decode(data).expect("base64")).expect("JSON body");
    edit(&mut body);
    let bytes = serde_json::to_vec(&body).expect("json");
    message["basicProperties"]["bodySize"] = json!(bytes.len());
    message["data"] = json!(engine.encode(bytes));
    sample
}

fn first_properties(sample: &mut Value) -> &mut Value {
    sample["rmqMessagesByQueue"]
        .as_object_mut()
        .and_then(|q| q.values_mut().next())
        .and_then(|msgs| msgs.get_mut(0))
        .map(|m| &mut m["basicProperties"])
        .expect("a message")
}

fn reserve_sample() -> (Value, String, Vec<String>) {
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let file = events_dir().join("inventory/inventory-reserve.json");
    let local::template::Trigger::Mq {
        queue,
        routing_keys,
        ..
    } = function_for(&file, &specs).triggers[0].clone()
    else {
        panic!("inventory-reserve is a queue function");
    };
    (read(&file), queue, routing_keys)
}

#[test]
fn the_unchanged_sample_passes_the_contract_check() {
    let (sample, queue, keys) = reserve_sample();
    assert_eq!(rmq_violations(&sample, &queue, &keys), Vec::<String>::new());
}

#[test]
fn a_renamed_payload_field_in_a_sample_is_caught() {
    let (sample, queue, keys) = reserve_sample();
    let drifted = with_body(&sample, |body| {
        let created = &mut body["payload"]["orderCreated"];
        let email = created["customerEmail"].take();
        created
            .as_object_mut()
            .expect("object")
            .remove("customerEmail");
        created["email"] = email;
    });
    let violations = rmq_violations(&drifted, &queue, &keys);
    assert!(
        violations.iter().any(|v| v
            .contains("/payload/orderCreated/email is not a contract field")
            && v.contains("/payload/orderCreated/customerEmail is missing")),
        "{violations:?}"
    );
}

#[test]
fn a_sample_with_a_clear_text_payment_token_is_caught() {
    let (sample, queue, keys) = reserve_sample();
    let drifted = with_body(&sample, |body| {
        body["payload"]["orderCreated"]["paymentToken"] = json!("tok_visa");
    });
    let violations = rmq_violations(&drifted, &queue, &keys);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("payment token in the clear")),
        "{violations:?}"
    );
}

#[test]
fn no_sample_event_carries_a_payment_token_but_the_http_request_that_places_the_order() {
    for file in all_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        let value = read(&file);
        let mut seen = text.contains("tok_visa");
        // Bodies are base64: look inside them too.
        if let Some(queues) = value["rmqMessagesByQueue"].as_object() {
            for m in queues
                .values()
                .flat_map(|v| v.as_array().into_iter().flatten())
            {
                let body = serde_json::from_value::<shared::rmq::RmqMessage>(m.clone())
                    .expect("message")
                    .body()
                    .expect("base64");
                seen |= String::from_utf8_lossy(&body).contains("tok_visa");
            }
        }
        let is_the_order_request = relative(&file) == "order/order-create.json";
        assert_eq!(seen, is_the_order_request, "{}", relative(&file));
    }
}

#[test]
fn an_extra_envelope_field_in_a_sample_is_caught() {
    let (sample, queue, keys) = reserve_sample();
    let drifted = with_body(&sample, |body| body["priority"] = json!("high"));
    let violations = rmq_violations(&drifted, &queue, &keys);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("/priority is not a contract field")),
        "{violations:?}"
    );
}

#[test]
fn an_amqp_type_that_disagrees_with_the_envelope_is_caught() {
    let (mut sample, queue, keys) = reserve_sample();
    first_properties(&mut sample)["type"] = json!("order.confirmed");
    let violations = rmq_violations(&sample, &queue, &keys);
    assert!(
        violations.iter().any(|v| v.contains("AMQP type")),
        "{violations:?}"
    );
}

#[test]
fn an_event_type_the_queue_is_not_bound_to_is_caught() {
    let (sample, queue, _) = reserve_sample();
    let violations = rmq_violations(&sample, &queue, &["order.cancelled".to_string()]);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("is not bound to the queue")),
        "{violations:?}"
    );
}

#[test]
fn a_sample_on_another_functions_queue_is_caught() {
    let (sample, _, keys) = reserve_sample();
    let violations = rmq_violations(&sample, "payment-process", &keys);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("the function consumes")),
        "{violations:?}"
    );
}

#[test]
fn a_content_type_that_does_not_match_the_body_is_caught() {
    let (mut sample, queue, keys) = reserve_sample();
    first_properties(&mut sample)["contentType"] = json!("application/x-protobuf");
    assert!(!rmq_violations(&sample, &queue, &keys).is_empty());
    first_properties(&mut sample)["contentType"] = Value::Null;
    let violations = rmq_violations(&sample, &queue, &keys);
    assert!(
        violations.iter().any(|v| v.contains("no contentType")),
        "{violations:?}"
    );
}

#[test]
fn a_message_id_or_header_that_disagrees_with_the_envelope_is_caught() {
    let (mut sample, queue, keys) = reserve_sample();
    first_properties(&mut sample)["messageId"] = json!("another-id");
    first_properties(&mut sample)["headers"]["traceparent"] =
        json!({"bytes": b"00-00000000000000000000000000000000-0000000000000000-01".to_vec()});
    let violations = rmq_violations(&sample, &queue, &keys);
    assert!(
        violations.iter().any(|v| v.contains("messageId")),
        "{violations:?}"
    );
    assert!(
        violations.iter().any(|v| v.contains("header traceparent")),
        "{violations:?}"
    );
}

#[test]
fn a_protobuf_sample_with_a_field_the_contract_lacks_is_caught() {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let file = events_dir().join("inventory/inventory-reserve-protobuf.json");
    let mut sample = read(&file);
    let message = sample["rmqMessagesByQueue"]
        .as_object_mut()
        .and_then(|q| q.values_mut().next())
        .and_then(|msgs| msgs.get_mut(0))
        .expect("a message");
    let mut body = engine
        .decode(message["data"].as_str().expect("data"))
        .expect("base64");
    // Field 99, varint 1: a field some other version of the contract has, this one not.
    body.extend_from_slice(&[0x98, 0x06, 0x01]);
    message["basicProperties"]["bodySize"] = json!(body.len());
    message["data"] = json!(engine.encode(&body));
    let violations = sample_violations(&file, &sample, &specs);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("protobuf body is not what")),
        "{violations:?}"
    );
}

#[test]
fn an_http_sample_whose_route_or_method_is_not_in_the_template_is_caught() {
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let file = events_dir().join("order/order-get.json");
    let sample = read(&file);
    assert_eq!(
        sample_violations(&file, &sample, &specs),
        Vec::<String>::new()
    );

    let mut renamed = sample.clone();
    renamed["routeKey"] = json!("GET /order/{id}");
    renamed["requestContext"]["routeKey"] = json!("GET /order/{id}");
    let violations = sample_violations(&file, &renamed, &specs);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("is not one of the function's")),
        "{violations:?}"
    );

    let mut method = sample.clone();
    method["requestContext"]["http"]["method"] = json!("DELETE");
    let violations = sample_violations(&file, &method, &specs);
    assert!(
        violations.iter().any(|v| v.contains("http.method")),
        "{violations:?}"
    );

    let mut path = sample;
    path["rawPath"] = json!("/orders/another-id");
    let violations = sample_violations(&file, &path, &specs);
    assert!(
        violations.iter().any(|v| v.contains("rawPath")),
        "{violations:?}"
    );
}

/// What the story needs that no sample creates: the products the samples order, and the
/// order they are about, PENDING as right after `POST /orders`.
async fn story_fixtures(env: &shared::testing::TestEnv) {
    let products = [
        ("sku-coffee", "Single-origin coffee beans 1 kg", 2490),
        ("sku-mug", "Mug", 1200),
    ];
    let seeds: Vec<inventory::ProductSeed> = products
        .iter()
        .map(|(id, name, price)| inventory::ProductSeed {
            product_id: id.to_string(),
            name: name.to_string(),
            price_cents: *price,
            currency: "EUR".into(),
            stock: 10,
        })
        .collect();
    inventory::upsert_products(&env.ctx, &seeds)
        .await
        .expect("seed products");
    let priced = order::domain::pricing::PricedOrder {
        lines: vec![
            order::domain::pricing::PricedLine {
                product_id: "sku-coffee".into(),
                quantity: 2,
                unit_price_cents: 2490,
            },
            order::domain::pricing::PricedLine {
                product_id: "sku-mug".into(),
                quantity: 1,
                unit_price_cents: 1200,
            },
        ],
        total_cents: 6180,
        currency: "EUR".into(),
    };
    let mut conn = env.ctx.pool.acquire().await.expect("connection");
    order::pg::orders::insert(
        &mut conn,
        &order::pg::orders::NewOrder {
            order_id: uuid::Uuid::parse_str(ORDER_ID).expect("uuid"),
            user_id: uuid::Uuid::parse_str(USER_ID).expect("uuid"),
            customer_email: "alice@example.com",
            priced: &priced,
            payment_ref: "tok_...visa",
            pending_timeout: std::time::Duration::from_secs(3600),
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            shipping_address: None,
        },
    )
    .await
    .expect("the samples' order");
}

#[tokio::test]
async fn every_sample_event_is_handled_by_its_function_when_fed_in_story_order() {
    use local::template::Trigger;
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let env = shared::testing::TestEnv::new().await;
    local::registry::migrate_all(&env.database_url)
        .await
        .expect("migrate");
    story_fixtures(&env).await;
    // Per function, the events it processed so far: a later copy is an honest duplicate.
    let mut processed: std::collections::HashSet<(String, String)> = Default::default();
    let mut failures = Vec::new();
    for name in STORY {
        let file = events_dir().join(name);
        let spec = function_for(&file, &specs);
        let value = read(&file);
        let ctor = local::registry::find(&spec.binary).expect("registered");
        let answer = match ctor(&env.ctx).invoke(value.clone()).await {
            Ok(answer) => answer,
            Err(e) => {
                failures.push(format!("{name}: the invocation failed: {e}"));
                continue;
            }
        };
        let Some(trigger) = spec.triggers.first() else {
            // The authorizer: a simple response, and a denial for the sample's dead token.
            if answer != serde_json::json!({"isAuthorized": false}) {
                failures.push(format!("{name}: expected a denial, got {answer}"));
            }
            continue;
        };
        match trigger {
            Trigger::Mq { .. } => {
                let ev: shared::rmq::RmqEvent =
                    serde_json::from_value(value).expect("checked by the contract test");
                let ids: Vec<String> = ev
                    .messages()
                    .filter_map(|(_, m)| shared::runner::decode(m).ok())
                    .map(|e| e.event_id)
                    .collect();
                let seen = ids
                    .iter()
                    .filter(|id| processed.contains(&(spec.binary.clone(), (*id).clone())))
                    .count();
                let report: shared::runner::BatchReport =
                    serde_json::from_value(answer).expect("batch report");
                let handled = report.parked.is_empty()
                    && report.processed == ids.len() - seen
                    && report.duplicates == seen
                    && (report.processed >= 1 || seen >= 1);
                if !handled {
                    failures.push(format!(
                        "{name}: {} fresh and {seen} already processed message(s), got {report:?}",
                        ids.len() - seen
                    ));
                }
                processed.extend(ids.into_iter().map(|id| (spec.binary.clone(), id)));
            }
            Trigger::Http { .. } => {
                let status = answer["statusCode"].as_u64().unwrap_or_default();
                let expected = EXPECTED_ERRORS.iter().find(|(f, _)| f == name);
                let ok = match expected {
                    Some((_, want)) => status == u64::from(*want),
                    None => (200..300).contains(&status),
                };
                if !ok {
                    let want = expected.map_or("2xx".to_string(), |(_, s)| s.to_string());
                    failures.push(format!(
                        "{name}: answered {status}, expected {want}: {answer}"
                    ));
                }
            }
            Trigger::Schedule { .. } => {}
        }
    }
    assert!(
        failures.is_empty(),
        "samples not handled as they should be:\n{}",
        failures.join("\n")
    );
}
