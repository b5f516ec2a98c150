//! The bridge's cost per message, before any business logic runs: AMQP deliveries become an
//! `aws:rmq` event (`message_from_amqp` + `event_for_queue`), the event becomes JSON, the
//! function parses it back into an `RmqEvent` and decodes each message's envelope
//! (`runner::decode`). Batches of 1, 10 and 100 `order.created` messages as the
//! `inventory-reserve` queue receives them, with the properties the publisher sets.
//!
//! Two ways the JSON travels: `wire` as bytes (what a Lambda or `cargo lambda watch`
//! receives), `in_process` as a `serde_json::Value` (what `orderflow up` hands the function).
//! Criterion reports time per batch and messages per second; divide by the batch size for
//! the cost per message.
//!
//! ```sh
//! cargo bench -p local --bench bridge -- --measurement-time 3 --warm-up-time 1
//! ```

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shared::contracts::{OrderCreated, OrderLine, Payload};
use shared::publisher::{OutMessage, amqp_properties};
use shared::rmq::{RmqEvent, RmqMessage, event_for_queue, message_from_amqp};
use shared::topology::Names;
use shared::{Encoding, Envelope};
use std::hint::black_box;

const QUEUE: &str = "inventory-reserve";
const VHOST: &str = "/";
const BATCHES: [usize; 3] = [1, 10, 100];

/// A delivery as lapin hands it to the bridge: properties and body.
struct Delivery {
    properties: lapin::BasicProperties,
    data: Vec<u8>,
    redelivered: bool,
}

fn order_created() -> Envelope {
    let line = |product_id: &str, quantity, unit_price_cents| OrderLine {
        product_id: product_id.into(),
        quantity,
        unit_price_cents,
    };
    let order_id = uuid::Uuid::now_v7().to_string();
    Envelope::new(
        Payload::OrderCreated(OrderCreated {
            payment_token_sealed: shared::payment_token::TokenKeys::development()
                .seal(&order_id, "tok_visa"),
            payment_ref: shared::payment_token::reference("tok_visa"),
            order_id,
            user_id: uuid::Uuid::now_v7().to_string(),
            customer_email: "ada.lovelace@example.com".into(),
            items: vec![
                line("sku-coffee", 2, 2490),
                line("sku-mug", 1, 1200),
                line("sku-grinder", 1, 8900),
            ],
            total_cents: 2 * 2490 + 1200 + 8900,
            currency: "EUR".into(),
            ..Default::default()
        }),
        None,
    )
}

fn deliveries(n: usize, encoding: Encoding) -> Vec<Delivery> {
    let names = Names::default();
    (0..n)
        .map(|_| {
            let out = OutMessage::event(&names, &order_created(), encoding);
            Delivery {
                properties: amqp_properties(&out),
                data: out.body,
                redelivered: false,
            }
        })
        .collect()
}

fn build(batch: &[Delivery]) -> RmqEvent {
    let messages: Vec<RmqMessage> = batch
        .iter()
        .map(|d| message_from_amqp(&d.properties, &d.data, d.redelivered))
        .collect();
    event_for_queue(QUEUE, VHOST, messages)
}

fn decode_all(event: &RmqEvent) -> usize {
    event
        .messages()
        .filter(|(_, m)| shared::runner::decode(m).is_ok())
        .count()
}

fn to_bytes(event: &RmqEvent) -> Vec<u8> {
    serde_json::to_vec(event).unwrap_or_default()
}

fn parse_bytes(json: &[u8]) -> RmqEvent {
    serde_json::from_slice(json).unwrap_or_default()
}

/// The whole path with the JSON as bytes.
fn wire(batch: &[Delivery]) -> usize {
    let json = to_bytes(&build(batch));
    decode_all(&parse_bytes(&json))
}

/// The whole path as `orderflow up` runs it in-process.
fn in_process(batch: &[Delivery]) -> usize {
    let value = serde_json::to_value(build(batch)).unwrap_or_default();
    let event: RmqEvent = serde_json::from_value(value).unwrap_or_default();
    decode_all(&event)
}

fn bridge(c: &mut Criterion) {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let label = match encoding {
            Encoding::Protobuf => "protobuf",
            Encoding::Json => "json",
        };
        let mut group = c.benchmark_group(format!("bridge/{label}"));
        for n in BATCHES {
            let batch = deliveries(n, encoding);
            let event = build(&batch);
            let json = to_bytes(&event);
            // Every stage must do its real work, or the figures mean nothing.
            assert_eq!(wire(&batch), n, "every message decodes (wire)");
            assert_eq!(in_process(&batch), n, "every message decodes (in-process)");
            assert_eq!(parse_bytes(&json), event, "JSON round trip");

            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("wire", n), &batch, |b, batch| {
                b.iter(|| wire(black_box(batch)))
            });
            group.bench_with_input(BenchmarkId::new("in_process", n), &batch, |b, batch| {
                b.iter(|| in_process(black_box(batch)))
            });
            // The stages of the wire path, protobuf bodies only (the default encoding).
            if encoding == Encoding::Protobuf {
                group.bench_with_input(BenchmarkId::new("1_build", n), &batch, |b, batch| {
                    b.iter(|| build(black_box(batch)))
                });
                group.bench_with_input(BenchmarkId::new("2_to_json", n), &event, |b, event| {
                    b.iter(|| to_bytes(black_box(event)))
                });
                group.bench_with_input(BenchmarkId::new("3_parse", n), &json, |b, json| {
                    b.iter(|| parse_bytes(black_box(json)))
                });
                group.bench_with_input(BenchmarkId::new("4_decode", n), &event, |b, event| {
                    b.iter(|| decode_all(black_box(event)))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bridge);
criterion_main!(benches);
