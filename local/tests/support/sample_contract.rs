//! The contract check of sample trigger events: pure functions from a sample (and what
//! template.yaml says of its function) to the ways it drifted, so the same check runs on
//! the files and on deliberately drifted copies.

use serde_json::Value;
use shared::{Encoding, Envelope};

/// What is wrong with an `aws:rmq` sample for a function that consumes `queue`, bound to
/// `routing_keys` in template.yaml. Empty when it holds to the contract.
pub fn rmq_violations(sample: &Value, queue: &str, routing_keys: &[String]) -> Vec<String> {
    let ev: shared::rmq::RmqEvent = match serde_json::from_value(sample.clone()) {
        Ok(ev) => ev,
        Err(e) => return vec![format!("not an aws:rmq event: {e}")],
    };
    let mut violations = Vec::new();
    if ev.event_source.as_deref() != Some("aws:rmq") {
        violations.push(format!("eventSource is {:?}", ev.event_source));
    }
    if ev.is_empty() {
        violations.push("no messages".into());
    }
    for (key, messages) in &ev.rmq_messages_by_queue {
        let (on, _vhost) = shared::rmq::split_queue_key(key);
        if on != queue {
            violations.push(format!(
                "messages on queue {on:?}, the function consumes {queue:?}"
            ));
        }
        for (i, m) in messages.iter().enumerate() {
            for v in message_violations(m, routing_keys) {
                violations.push(format!("{key} message {i}: {v}"));
            }
        }
    }
    violations
}

fn message_violations(m: &shared::rmq::RmqMessage, routing_keys: &[String]) -> Vec<String> {
    let props = &m.basic_properties;
    let body = match m.body() {
        Ok(b) => b,
        Err(e) => return vec![format!("data is not base64: {e}")],
    };
    let Some(content_type) = props.content_type.as_deref() else {
        return vec!["no contentType: a sample says how its body is encoded".into()];
    };
    let encoding = match Encoding::from_content_type(Some(content_type)) {
        Ok(enc) => enc,
        Err(e) => return vec![e.to_string()],
    };
    let env = match Envelope::decode(&body, encoding) {
        Ok(env) => env,
        Err(e) => return vec![format!("the body is not a {content_type} envelope: {e}")],
    };
    let mut violations = Vec::new();
    // Tokens travel sealed for the payment service (shared::payment_token): a sample that
    // still shows one in the clear teaches the old contract.
    if let shared::contracts::Payload::OrderCreated(order) = env.payload()
        && !order.payment_token.is_empty()
    {
        violations.push(
            "order.created carries a payment token in the clear (paymentToken): seal it \
             (paymentTokenSealed) and show only paymentRef"
                .into(),
        );
    }
    // Decoding tolerates drift (unknown fields are skipped, missing ones default): only
    // writing the envelope back shows it.
    match encoding {
        Encoding::Json => {
            let carried: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let written: Value =
                serde_json::from_slice(&env.encode(Encoding::Json)).unwrap_or(Value::Null);
            let mut differences = Vec::new();
            json_differences(&carried, &written, "", &mut differences);
            if !differences.is_empty() {
                violations.push(format!(
                    "the JSON body is not what the contract types write: {}",
                    differences.join(", ")
                ));
            }
        }
        Encoding::Protobuf => {
            if serde_json::from_slice::<Value>(&body).is_ok() {
                violations.push("a JSON body labelled protobuf".into());
            }
            if env.encode(Encoding::Protobuf) != body {
                violations.push(
                    "the protobuf body is not what the contract types write \
                     (unknown, renamed or retyped fields)"
                        .into(),
                );
            }
        }
    }
    if props.type_.as_deref() != Some(env.event_type.as_str()) {
        violations.push(format!(
            "AMQP type {:?}, but the envelope is {}",
            props.type_, env.event_type
        ));
    }
    if !routing_keys
        .iter()
        .any(|k| shared::topology::topic_matches(k, &env.event_type))
    {
        violations.push(format!(
            "{} is not bound to the queue (bound: {routing_keys:?})",
            env.event_type
        ));
    }
    if props.message_id.as_deref() != Some(env.event_id.as_str()) {
        violations.push(format!(
            "messageId {:?}, but the event id is {}",
            props.message_id, env.event_id
        ));
    }
    if props.correlation_id.as_deref() != Some(env.correlation_id.as_str()) {
        violations.push(format!(
            "correlationId {:?}, but the envelope's is {:?}",
            props.correlation_id, env.correlation_id
        ));
    }
    for (name, value) in env.amqp_headers() {
        let header = props.header_text(name);
        if header.as_deref() != Some(value.as_str()) {
            violations.push(format!(
                "header {name} is {header:?}, the envelope says {value:?}"
            ));
        }
    }
    if let Some(size) = props.body_size
        && size != body.len() as u64
    {
        violations.push(format!("bodySize {size}, the body is {} bytes", body.len()));
    }
    violations
}

/// Where two JSON values differ, as paths (`/payload/orderCreated/customerEmail`).
fn json_differences(carried: &Value, written: &Value, at: &str, out: &mut Vec<String>) {
    match (carried, written) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => json_differences(v, w, &format!("{at}/{k}"), out),
                    None => out.push(format!("{at}/{k} is not a contract field")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{at}/{k} is missing"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                json_differences(v, w, &format!("{at}/{i}"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{at} is {a}, written back as {b}")),
        _ => {}
    }
}

/// What is wrong with an HTTP API sample for a function with these routes
/// (`"METHOD /path/{param}"`, as in template.yaml). Empty when it holds.
pub fn http_violations(sample: &Value, routes: &[String]) -> Vec<String> {
    if let Err(e) = serde_json::from_value::<shared::http::Request>(sample.clone()) {
        return vec![format!("not an HTTP API (v2) event: {e}")];
    }
    let mut violations = Vec::new();
    let route_key = sample["routeKey"].as_str().unwrap_or_default();
    if !routes.iter().any(|r| r == route_key) {
        violations.push(format!(
            "route {route_key:?} is not one of the function's in template.yaml: {routes:?}"
        ));
    }
    let Some((method, path)) = route_key.split_once(' ') else {
        violations.push(format!("routeKey {route_key:?} is not \"METHOD /path\""));
        return violations;
    };
    let context = &sample["requestContext"];
    if context["http"]["method"] != method {
        violations.push(format!(
            "requestContext.http.method is {}, the route's is {method}",
            context["http"]["method"]
        ));
    }
    if context["routeKey"] != route_key {
        violations.push(format!(
            "requestContext.routeKey is {}, not {route_key:?}",
            context["routeKey"]
        ));
    }
    // The path the route matches, its parameters filled in from pathParameters.
    let filled: Vec<String> = path
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => sample["pathParameters"][name]
                    .as_str()
                    .map_or_else(|| format!("<no path parameter {name}>"), str::to_string),
                None => segment.to_string(),
            },
        )
        .collect();
    let filled = filled.join("/");
    if sample["rawPath"] != filled.as_str() {
        violations.push(format!(
            "rawPath is {}, the route with its parameters is {filled:?}",
            sample["rawPath"]
        ));
    }
    if context["http"]["path"] != sample["rawPath"] {
        violations.push(format!(
            "requestContext.http.path is {}, rawPath is {}",
            context["http"]["path"], sample["rawPath"]
        ));
    }
    violations
}
