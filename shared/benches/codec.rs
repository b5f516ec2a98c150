//! Envelope codecs: encoded size of every event type in JSON and protobuf, and the time
//! `Envelope::encode` / `Envelope::decode` take for each.
//!
//! The size table is printed once and written to `target/criterion-sizes.md`; sizes are
//! exact, not sampled, so they do not depend on the machine.
//!
//! ```sh
//! cargo bench -p shared --bench codec -- --measurement-time 3 --warm-up-time 1
//! ```

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shared::contracts::*;
use shared::{Encoding, Envelope};
use std::hint::black_box;
use std::path::PathBuf;

const ORDER_ID: &str = "0193a5b0-7c1e-7d2a-9f3e-4b5c6d7e8f90";
const USER_ID: &str = "0193a5af-12d4-7b61-8e0f-2a9c4d5e6f70";
const PAYMENT_ID: &str = "0193a5b0-7d02-7c44-a1b2-c3d4e5f60718";
const EMAIL: &str = "ada.lovelace@example.com";

/// The demo catalog's products, cycled to fill a basket of any size.
const CATALOG: [(&str, i64); 5] = [
    ("sku-coffee", 2490),
    ("sku-mug", 1200),
    ("sku-grinder", 8900),
    ("sku-kettle", 5900),
    ("sku-limited", 14900),
];

fn basket(lines: usize) -> Vec<OrderLine> {
    (0..lines)
        .map(|i| {
            let (product, price) = CATALOG[i % CATALOG.len()];
            let product_id = if i < CATALOG.len() {
                product.to_string()
            } else {
                format!("{product}-{i}")
            };
            OrderLine {
                product_id,
                quantity: (i % 3 + 1) as u32,
                unit_price_cents: price,
            }
        })
        .collect()
}

fn order_created(lines: usize) -> Payload {
    let items = basket(lines);
    let total_cents = items
        .iter()
        .map(|l| i64::from(l.quantity) * l.unit_price_cents)
        .sum();
    Payload::OrderCreated(OrderCreated {
        order_id: ORDER_ID.into(),
        user_id: USER_ID.into(),
        customer_email: EMAIL.into(),
        items,
        total_cents,
        currency: "EUR".into(),
        payment_token_sealed: shared::payment_token::TokenKeys::development()
            .seal(ORDER_ID, "tok_visa"),
        payment_ref: shared::payment_token::reference("tok_visa"),
        ..Default::default()
    })
}

/// One realistic envelope per event type (OrderCreated with 1-, 3- and 10-line baskets),
/// each caused by the order it is about, as on the bus.
fn cases() -> Vec<(&'static str, Envelope)> {
    let first = Envelope::new(order_created(3), None);
    let caused = |p: Payload| Envelope::new(p, Some(&first));
    vec![
        (
            "OrderCreated (1 line)",
            Envelope::new(order_created(1), None),
        ),
        ("OrderCreated (3 lines)", first.clone()),
        (
            "OrderCreated (10 lines)",
            Envelope::new(order_created(10), None),
        ),
        (
            "StockReserved (3 lines)",
            caused(Payload::StockReserved(StockReserved {
                order_id: ORDER_ID.into(),
                items: basket(3),
            })),
        ),
        (
            "StockRejected",
            caused(Payload::StockRejected(StockRejected {
                order_id: ORDER_ID.into(),
                reason: RejectReason::OutOfStock as i32,
                product_id: "sku-limited".into(),
            })),
        ),
        (
            "PaymentProcessed",
            caused(Payload::PaymentProcessed(PaymentProcessed {
                order_id: ORDER_ID.into(),
                status: PaymentStatus::Success as i32,
                payment_id: PAYMENT_ID.into(),
                amount_cents: 17_380,
                currency: "EUR".into(),
                decline_code: String::new(),
                last4: "4242".into(),
            })),
        ),
        (
            "OrderConfirmed",
            caused(Payload::OrderConfirmed(OrderConfirmed {
                order_id: ORDER_ID.into(),
                user_id: USER_ID.into(),
                customer_email: EMAIL.into(),
                total_cents: 17_380,
                currency: "EUR".into(),
            })),
        ),
        (
            "OrderCancelled",
            caused(Payload::OrderCancelled(OrderCancelled {
                order_id: ORDER_ID.into(),
                user_id: USER_ID.into(),
                customer_email: EMAIL.into(),
                reason: CancelReason::PaymentDeclined as i32,
            })),
        ),
        (
            "StockReleased (3 lines)",
            caused(Payload::StockReleased(StockReleased {
                order_id: ORDER_ID.into(),
                items: basket(3),
            })),
        ),
        (
            "PaymentCaptured",
            caused(Payload::PaymentCaptured(PaymentCaptured {
                order_id: ORDER_ID.into(),
                payment_id: PAYMENT_ID.into(),
                amount_cents: 17_380,
                currency: "EUR".into(),
            })),
        ),
        (
            "PaymentVoided",
            caused(Payload::PaymentVoided(PaymentVoided {
                order_id: ORDER_ID.into(),
                payment_id: PAYMENT_ID.into(),
            })),
        ),
        (
            "NotificationSent",
            caused(Payload::NotificationSent(NotificationSent {
                order_id: ORDER_ID.into(),
                kind: NotificationKind::OrderConfirmed as i32,
                channel: "webhook".into(),
                notification_id: "0193a5b0-7e31-7f00-b6c7-d8e9f0a1b2c3".into(),
            })),
        ),
        (
            "ProductUpdated",
            Envelope::new(
                Payload::ProductUpdated(ProductUpdated {
                    product_id: "sku-coffee".into(),
                    name: "Single-origin coffee beans 1 kg".into(),
                    price_cents: 2490,
                    currency: "EUR".into(),
                    version: 42,
                    ..Default::default()
                }),
                None,
            ),
        ),
    ]
}

/// Where cargo puts build output: the bench binary lives in `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn size_table(cases: &[(&'static str, Envelope)]) -> String {
    let mut out = String::from(
        "| event (in its envelope) | JSON bytes | protobuf bytes | protobuf saves |\n|---|---:|---:|---:|\n",
    );
    let (mut json_total, mut proto_total) = (0usize, 0usize);
    for (name, env) in cases {
        let json = env.encode(Encoding::Json).len();
        let proto = env.encode(Encoding::Protobuf).len();
        json_total += json;
        proto_total += proto;
        out.push_str(&format!(
            "| {name} | {json} | {proto} | {:.0}% |\n",
            saved(json, proto)
        ));
    }
    out.push_str(&format!(
        "| all of the above | {json_total} | {proto_total} | {:.0}% |\n",
        saved(json_total, proto_total)
    ));
    out
}

fn saved(json: usize, proto: usize) -> f64 {
    100.0 * (1.0 - proto as f64 / json as f64)
}

fn report_sizes(cases: &[(&'static str, Envelope)]) {
    let table = size_table(cases);
    println!("\nEncoded envelope sizes:\n\n{table}");
    let path = target_dir().join("criterion-sizes.md");
    match std::fs::write(
        &path,
        format!("# Envelope sizes, JSON vs protobuf\n\n{table}"),
    ) {
        Ok(()) => println!("(written to {})\n", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

fn codec(c: &mut Criterion) {
    let cases = cases();
    for (_, env) in &cases {
        for enc in [Encoding::Json, Encoding::Protobuf] {
            let back = Envelope::decode(&env.encode(enc), enc);
            assert_eq!(back.ok().as_ref(), Some(env), "{enc:?} round trip");
        }
    }
    report_sizes(&cases);

    for (op, is_decode) in [("encode", false), ("decode", true)] {
        let mut group = c.benchmark_group(format!("envelope/{op}"));
        for (name, env) in &cases {
            for (label, enc) in [("json", Encoding::Json), ("protobuf", Encoding::Protobuf)] {
                let body = env.encode(enc);
                group.throughput(Throughput::Bytes(body.len() as u64));
                let id = BenchmarkId::new(label, name);
                if is_decode {
                    group.bench_with_input(id, &body, |b, body| {
                        b.iter(|| Envelope::decode(black_box(body), enc))
                    });
                } else {
                    group.bench_with_input(id, env, |b, env| b.iter(|| black_box(env).encode(enc)));
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
