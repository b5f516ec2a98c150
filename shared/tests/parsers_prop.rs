//! Property tests of every parser of outside input in `shared`: the `aws:rmq` event, the
//! envelope in both encodings (alone and as the batch runner decodes a message), the
//! content type, the API Gateway request with its headers (bearer token, any header) and
//! JSON body, and W3C `traceparent`. Inputs are arbitrary bytes and structure-aware
//! mutations of the samples under `events/`. Properties: never a panic; invalid input is an
//! `Err` with a message; valid generated input round-trips.

#[path = "support/mutate.rs"]
mod mutate;

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::Value;
use shared::contracts::*;
use shared::envelope::DecodeError;
use shared::rmq::{BasicProperties, HeaderValue, RmqEvent, RmqMessage};
use shared::{Encoding, Envelope};
use std::collections::BTreeMap;
use std::path::Path;

fn samples(kind: &str) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).expect("events/") {
        for file in std::fs::read_dir(dir.expect("dir").path()).expect("dir") {
            let text = std::fs::read_to_string(file.expect("file").path()).expect("read");
            let v: Value = serde_json::from_str(&text).expect("sample JSON");
            let is_rmq = v.get("rmqMessagesByQueue").is_some();
            let is_http = v.get("routeKey").is_some();
            if (kind == "rmq" && is_rmq) || (kind == "http" && is_http) {
                out.push(v);
            }
        }
    }
    assert!(!out.is_empty(), "no {kind} samples");
    out
}

/// The envelope bodies the `aws:rmq` samples carry: (bytes, encoding).
fn bodies() -> Vec<(Vec<u8>, Encoding)> {
    let mut out = Vec::new();
    for sample in samples("rmq") {
        let ev: RmqEvent = serde_json::from_value(sample).expect("sample parses");
        for (_, m) in ev.messages() {
            let enc = Encoding::from_content_type(m.basic_properties.content_type.as_deref())
                .expect("sample content type");
            out.push((m.body().expect("sample base64"), enc));
        }
    }
    out
}

/// Both ways an event is parsed: from bytes (the bridge's benchmarks, tools) and from the
/// `serde_json::Value` the Lambda runtime hands `RmqFunction::invoke`. Whatever the runtime
/// could read as JSON parses the same both ways (the bytes path alone also skips unknown
/// fields holding numbers or nesting that a `Value` cannot hold).
fn parse_rmq(bytes: &[u8]) -> Result<RmqEvent, String> {
    let direct = serde_json::from_slice::<RmqEvent>(bytes).map_err(|e| e.to_string());
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        let via_value = serde_json::from_value::<RmqEvent>(value).map_err(|e| e.to_string());
        assert_eq!(
            direct.is_ok(),
            via_value.is_ok(),
            "{direct:?} / {via_value:?}"
        );
        if let (Ok(a), Ok(b)) = (&direct, &via_value) {
            assert_eq!(a, b);
        }
    }
    direct
}

/// Each message decoded as the runner does; every failure has a reason.
fn check_messages(ev: &RmqEvent) {
    for (_, m) in ev.messages() {
        if let Err(reason) = shared::runner::decode(m) {
            assert!(!reason.trim().is_empty());
        }
        let _ = m.basic_properties.header_text("traceparent");
        let _ = m
            .basic_properties
            .header("x-delivery-count")
            .and_then(HeaderValue::as_i64);
    }
}

fn check_decode(bytes: &[u8], enc: Encoding) {
    match Envelope::decode(bytes, enc) {
        Ok(env) => {
            // What decodes is usable: its payload agrees with its type.
            assert_eq!(env.event_type, env.payload().event_type());
        }
        Err(e) => assert!(!e.to_string().trim().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn rmq_events_from_arbitrary_bytes_never_panic(bytes in mutate::junk()) {
        match parse_rmq(&bytes) {
            Ok(ev) => check_messages(&ev),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn envelopes_from_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_decode(&bytes, Encoding::Protobuf);
        check_decode(&bytes, Encoding::Json);
    }

    #[test]
    fn mutated_json_envelopes_decode_or_fail_with_a_reason(
        bytes in mutate::mutated_json(
            bodies().into_iter()
                .filter(|(_, e)| *e == Encoding::Json)
                .map(|(b, _)| serde_json::from_slice(&b).expect("JSON body"))
                .collect()
        )
    ) {
        check_decode(&bytes, Encoding::Json);
    }

    #[test]
    fn protobuf_envelopes_with_flipped_cut_or_inserted_bytes_decode_or_fail_with_a_reason(
        (mut bytes, ops) in (
            prop::sample::select(bodies().into_iter()
                .map(|(b, e)| match e {
                    Encoding::Protobuf => b,
                    Encoding::Json => Envelope::decode(&b, e).expect("sample").encode(Encoding::Protobuf),
                })
                .collect::<Vec<_>>()),
            prop::collection::vec(mutate::byte_op(), 1..6),
        )
    ) {
        for op in &ops {
            mutate::apply_bytes(&mut bytes, op);
        }
        check_decode(&bytes, Encoding::Protobuf);
    }

    #[test]
    fn generated_envelopes_round_trip_through_both_encodings(env in envelope()) {
        for enc in [Encoding::Protobuf, Encoding::Json] {
            match Envelope::decode(&env.encode(enc), enc) {
                Ok(back) => prop_assert_eq!(&back, &env, "{:?}", enc),
                Err(e) => prop_assert!(false, "{:?}: {}", enc, e),
            }
        }
    }

    #[test]
    fn generated_rmq_events_round_trip_through_json(ev in rmq_event()) {
        let json = serde_json::to_vec(&ev).expect("serialises");
        let back: RmqEvent = serde_json::from_slice(&json).expect("parses back");
        prop_assert_eq!(back, ev);
    }

    #[test]
    fn content_types_pick_a_codec_or_are_refused_with_a_reason(ct in ".{0,40}") {
        match Encoding::from_content_type(Some(&ct)) {
            Ok(_) => {}
            Err(e) => prop_assert!(matches!(e, DecodeError::ContentType(_)) && !e.to_string().is_empty()),
        }
        let json = format!("application/json; charset={ct}");
        prop_assert_eq!(Encoding::from_content_type(Some(&json)).ok(), Some(Encoding::Json));
    }

    #[test]
    fn traceparents_parse_only_when_well_formed(tp in traceparent_like()) {
        let child = shared::telemetry::child_traceparent(&tp);
        prop_assert!(shared::telemetry::parse_traceparent(&child).is_some(), "{}", child);
        if let Some((trace, _)) = shared::telemetry::parse_traceparent(&tp) {
            prop_assert_eq!(&child[3..35], trace, "a child keeps the trace");
        }
    }

    #[test]
    fn valid_traceparents_are_accepted(
        trace in "[0-9a-f]{32}", span in "[0-9a-f]{16}", flags in "[0-9a-f]{2}"
    ) {
        prop_assume!(trace != "0".repeat(32));
        let tp = format!("00-{trace}-{span}-{flags}");
        prop_assert_eq!(shared::telemetry::parse_traceparent(&tp), Some((trace.as_str(), flags.as_str())));
    }

    #[test]
    fn http_requests_from_mutated_samples_parse_or_fail_with_a_reason(
        bytes in mutate::mutated_json(samples("http"))
    ) {
        check_http(&bytes);
    }

    #[test]
    fn http_requests_from_arbitrary_bytes_never_panic(bytes in mutate::junk()) {
        check_http(&bytes);
    }

    #[test]
    fn sealed_tokens_round_trip_for_their_order(order in ".{0,40}", token in ".{0,80}") {
        let keys = shared::payment_token::TokenKeys::development();
        let sealed = keys.seal(&order, &token);
        prop_assert_eq!(keys.open(&order, &sealed), Ok(token.clone()));
        let shown = shared::payment_token::reference(&token);
        prop_assert!(shown.starts_with("tok_...") && shown.chars().count() <= 11);
    }

    #[test]
    fn sealed_tokens_from_outside_open_or_are_refused_with_a_reason(
        order in "[a-z0-9-]{1,12}",
        token in "tok_[a-zA-Z]{1,20}",
        ops in prop::collection::vec(mutate::byte_op(), 0..4),
        junk in ".{0,80}",
        use_junk in any::<bool>(),
    ) {
        let keys = shared::payment_token::TokenKeys::development();
        let sealed = if use_junk {
            junk
        } else {
            let mut bytes = keys.seal(&order, &token).into_bytes();
            for op in &ops {
                mutate::apply_bytes(&mut bytes, op);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        match keys.open(&order, &sealed) {
            Ok(opened) => prop_assert_eq!(opened, token, "only the untouched seal opens"),
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!message.is_empty() && !message.contains(&token), "{}", message);
            }
        }
    }

    #[test]
    fn any_header_bytes_are_read_without_panicking(
        name in "[a-zA-Z-]{1,20}",
        value in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut req = shared::http::request("POST", "/orders", "POST /orders");
        let Ok(value) = aws_lambda_events::http::HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let Ok(header) = aws_lambda_events::http::HeaderName::from_bytes(name.as_bytes()) else {
            return Ok(());
        };
        req.headers.insert(header, value.clone());
        req.headers.insert(aws_lambda_events::http::header::AUTHORIZATION, value);
        let _ = shared::http::header(&req, &name.to_ascii_lowercase());
        if let Some(token) = shared::http::bearer(&req) {
            prop_assert!(!token.is_empty() && token == token.trim());
        }
    }

    #[test]
    fn a_bearer_token_round_trips_through_its_header(
        scheme in "(?i)bearer", token in "[!-~]{1,100}"
    ) {
        let mut req = shared::http::request("GET", "/orders/1", "GET /orders/{id}");
        let value = aws_lambda_events::http::HeaderValue::from_str(&format!("{scheme} {token}"))
            .expect("visible ASCII");
        req.headers.insert(aws_lambda_events::http::header::AUTHORIZATION, value);
        prop_assert_eq!(shared::http::bearer(&req), Some(token.as_str()));
    }
}

proptest! {
    // The rmq samples are large (string headers travel as arrays of byte numbers): fewer
    // cases in about the same time as the others.
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_rmq_samples_parse_or_fail_with_a_reason(bytes in mutate::mutated_json(samples("rmq"))) {
        match parse_rmq(&bytes) {
            Ok(ev) => check_messages(&ev),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

}

proptest! {
    // Each case parses up to 128 nested untagged header values (the parse of a nested
    // untagged enum buffers every level, so a deep case costs milliseconds).
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn header_values_nested_up_to_the_json_depth_limit_parse_without_exhausting_the_stack(
        depth in 0usize..140, arrays in any::<bool>(), sample in prop::sample::select(samples("rmq"))
    ) {
        let mut inner = Value::from("x");
        for _ in 0..depth {
            inner = if arrays { Value::Array(vec![inner]) } else { serde_json::json!({ "t": inner }) };
        }
        let mut sample = sample;
        for messages in sample["rmqMessagesByQueue"].as_object_mut().into_iter().flat_map(|q| q.values_mut()) {
            for m in messages.as_array_mut().into_iter().flatten() {
                m["basicProperties"]["headers"]["deep"] = inner.clone();
            }
        }
        // Serialising goes as deep as the value; only the parse is bounded (128 levels).
        let bytes = serde_json::to_vec(&sample).expect("serialises");
        match parse_rmq(&bytes) {
            Ok(ev) => check_messages(&ev),
            Err(e) => prop_assert!(e.contains("recursion limit"), "{}", e),
        }
    }

}

/// The HTTP function's edge: JSON, then the v2 request, then its JSON body.
fn check_http(bytes: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    match serde_json::from_value::<shared::http::Request>(value) {
        Ok(req) => {
            let _ = shared::http::bearer(&req);
            let _ = shared::http::header(&req, "idempotency-key");
            let _ = shared::http::header(&req, "content-type");
            let _ = shared::http::method(&req);
            if let Err(e) = shared::http::json_body::<Value>(&req) {
                assert_eq!(e.status, 400);
                assert!(!e.message.is_empty());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn traceparent_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,60}",
        "[0-9a-f-]{0,60}",
        ("[0-9a-fA-Fxz]{0,34}", "[0-9a-fA-F]{0,18}", "[0-9a-f]{0,3}")
            .prop_map(|(t, s, f)| format!("00-{t}-{s}-{f}")),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,24}", "[a-z0-9_.@-]{0,16}", Just(String::new())]
}

fn line() -> impl Strategy<Value = OrderLine> {
    (text(), any::<u32>(), any::<i64>()).prop_map(|(product_id, quantity, unit_price_cents)| {
        OrderLine {
            product_id,
            quantity,
            unit_price_cents,
        }
    })
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (
            text(),
            text(),
            prop::collection::vec(line(), 0..4),
            any::<i64>(),
            text(),
            text(),
            text()
        )
            .prop_map(
                |(order_id, customer_email, items, total_cents, currency, sealed, payment_ref)| {
                    Payload::OrderCreated(OrderCreated {
                        order_id,
                        user_id: "u".into(),
                        customer_email,
                        items,
                        total_cents,
                        currency,
                        payment_token: String::new(),
                        payment_token_sealed: sealed,
                        payment_ref,
                    })
                }
            ),
        (
            text(),
            any::<i32>(),
            text(),
            any::<i64>(),
            text(),
            text(),
            text()
        )
            .prop_map(
                |(order_id, status, payment_id, amount_cents, currency, decline_code, last4)| {
                    Payload::PaymentProcessed(PaymentProcessed {
                        order_id,
                        status,
                        payment_id,
                        amount_cents,
                        currency,
                        decline_code,
                        last4,
                    })
                }
            ),
        (text(), any::<i32>(), text()).prop_map(|(order_id, reason, product_id)| {
            Payload::StockRejected(StockRejected {
                order_id,
                reason,
                product_id,
            })
        }),
        (text(), any::<i32>()).prop_map(|(order_id, reason)| {
            Payload::OrderCancelled(OrderCancelled {
                order_id,
                reason,
                ..Default::default()
            })
        }),
        (text(), prop::collection::vec(line(), 0..4)).prop_map(|(order_id, items)| {
            Payload::StockReleased(StockReleased { order_id, items })
        }),
        (text(), any::<i32>(), text(), text()).prop_map(
            |(order_id, kind, channel, notification_id)| {
                Payload::NotificationSent(NotificationSent {
                    order_id,
                    kind,
                    channel,
                    notification_id,
                })
            }
        ),
        (text(), text(), any::<i64>(), any::<u64>()).prop_map(
            |(product_id, name, price_cents, version)| {
                Payload::ProductUpdated(ProductUpdated {
                    product_id,
                    name,
                    price_cents,
                    currency: "EUR".into(),
                    version,
                    ..Default::default()
                })
            }
        ),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        payload(),
        any::<u128>(),
        0..=SCHEMA_VERSION,
        any::<i64>(),
        text(),
        text(),
        text(),
    )
        .prop_map(
            |(
                payload,
                id,
                schema_version,
                occurred_at_ms,
                correlation_id,
                causation_id,
                traceparent,
            )| {
                Envelope {
                    event_id: uuid::Uuid::from_u128(id).to_string(),
                    event_type: payload.event_type().to_string(),
                    schema_version,
                    occurred_at_ms,
                    correlation_id,
                    causation_id,
                    traceparent,
                    payload: Some(payload),
                }
            },
        )
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    let leaf = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|bytes| HeaderValue::Bytes { bytes }),
        any::<bool>().prop_map(HeaderValue::Bool),
        any::<i64>().prop_map(HeaderValue::Int),
        // Fractional (a whole float comes back as an integer) with few digits: serde_json's
        // default float parser may be one ULP off past about 15 significant digits.
        (any::<i16>(), 1u8..100)
            .prop_map(|(i, f)| HeaderValue::Float(f64::from(i) + f64::from(f) / 128.0)),
        ".{0,12}".prop_map(HeaderValue::String),
        Just(HeaderValue::Null(())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(HeaderValue::Array),
            // A table with a `bytes` key reads back as a string header: not generated.
            prop::collection::btree_map(
                "[a-z_-]{1,8}".prop_filter("not bytes", |k| k != "bytes"),
                inner,
                0..4
            )
            .prop_map(HeaderValue::Table),
        ]
    })
}

fn message() -> impl Strategy<Value = RmqMessage> {
    (
        prop::option::of(text()),
        prop::option::of(prop::collection::btree_map(
            "[a-z_-]{1,12}",
            header_value(),
            0..4,
        )),
        prop::option::of(any::<u8>()),
        prop::option::of(any::<u8>()),
        prop::option::of(text()),
        prop::option::of(any::<u64>()),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(
                content_type,
                headers,
                delivery_mode,
                priority,
                message_id,
                body_size,
                redelivered,
                body,
            )| {
                RmqMessage {
                    basic_properties: BasicProperties {
                        content_type,
                        headers,
                        delivery_mode,
                        priority,
                        message_id,
                        body_size,
                        timestamp: Some(Value::from("Jan 1, 1970, 12:33:41 AM")),
                        ..Default::default()
                    },
                    redelivered,
                    data: base64::engine::general_purpose::STANDARD.encode(body),
                }
            },
        )
}

fn rmq_event() -> impl Strategy<Value = RmqEvent> {
    prop::collection::btree_map(
        "[a-z.-]{1,12}::/",
        prop::collection::vec(message(), 0..3),
        0..3,
    )
    .prop_map(|by_queue: BTreeMap<String, Vec<RmqMessage>>| RmqEvent {
        event_source: Some("aws:rmq".into()),
        event_source_arn: None,
        rmq_messages_by_queue: by_queue,
    })
}
