//! A batch holding an undecodable message among good ones: the good ones are processed
//! once (even when the batch is delivered again), the bad one is parked on the real
//! dead-letter queue with its reason, original queue and attempt count.

use lapin::options::BasicGetOptions;
use shared::contracts::*;
use shared::{Encoding, Envelope};
use std::sync::Arc;

fn created(order: &str) -> Envelope {
    Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: order.into(),
            user_id: uuid::Uuid::now_v7().to_string(),
            customer_email: "a@example.com".into(),
            items: vec![OrderLine {
                product_id: "sku-a".into(),
                quantity: 1,
                unit_price_cents: 100,
            }],
            total_cents: 100,
            currency: "EUR".into(),
            payment_token_sealed: shared::payment_token::TokenKeys::development()
                .seal(order, "tok_visa"),
            payment_ref: shared::payment_token::reference("tok_visa"),
            ..Default::default()
        }),
        None,
    )
}

#[tokio::test]
async fn one_bad_message_is_parked_with_its_reason_and_the_good_ones_are_processed_once() {
    let database_url = shared::testing::fresh_database().await;
    let prefix = shared::testing::random_prefix();
    let cfg = shared::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(database_url.clone()),
        "ORDERFLOW_PREFIX" => Some(prefix.clone()),
        _ => std::env::var(k).ok(),
    })
    .expect("config");
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    local::stack::prepare(&cfg, &specs)
        .await
        .expect("migrations and topology");
    let ctx = shared::context::Context::new(cfg.clone()).expect("context");
    inventory::upsert_products(
        &ctx,
        &[inventory::ProductSeed {
            product_id: "sku-a".into(),
            name: "A".into(),
            price_cents: 100,
            currency: "EUR".into(),
            stock: 10,
        }],
    )
    .await
    .expect("seed");

    let queue = ctx.names.queue("inventory-reserve");
    let (a, b) = (
        created(&uuid::Uuid::now_v7().to_string()),
        created(&uuid::Uuid::now_v7().to_string()),
    );
    let msg = |e: &Envelope| {
        let out = shared::publisher::OutMessage::event(&ctx.names, e, Encoding::Protobuf);
        shared::rmq::message_from_amqp(&shared::publisher::amqp_properties(&out), &out.body, false)
    };
    let mut garbage = msg(&a);
    garbage.data = "bm90IGEgcHJvdG9idWYgZW52ZWxvcGU=".into(); // "not a protobuf envelope"
    garbage.basic_properties.message_id = Some("garbage-1".into());
    let event = shared::rmq::event_for_queue(&queue, "/", vec![msg(&a), garbage, msg(&b)]);

    let f: Arc<dyn shared::Function> = inventory::functions::reserve(&ctx);
    let report: shared::runner::BatchReport = serde_json::from_value(
        f.invoke(serde_json::to_value(&event).expect("json"))
            .await
            .expect("batch succeeds"),
    )
    .expect("report");
    assert_eq!(
        (report.processed, report.parked.len()),
        (2, 1),
        "{report:?}"
    );
    assert!(report.parked[0].reason.contains("protobuf"), "{report:?}");

    // The same batch again (a redelivery): nothing applied twice.
    let again: shared::runner::BatchReport = serde_json::from_value(
        f.invoke(serde_json::to_value(&event).expect("json"))
            .await
            .expect("batch succeeds"),
    )
    .expect("report");
    assert_eq!(again.duplicates, 2, "{again:?}");
    let levels = inventory::stock_levels(&ctx.pool).await.expect("stock");
    assert_eq!(levels[0].available, 8, "two units reserved, once each");

    // The parked message sits in the real dead-letter queue, explained.
    let conn = shared::publisher::connect(&cfg.amqp_url, "test")
        .await
        .expect("broker");
    let ch = conn.create_channel().await.expect("channel");
    let dlq = ctx.names.dead_letter_queue("inventory-reserve");
    let mut parked = Vec::new();
    while let Some(m) = ch
        .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        parked.push(m);
    }
    assert_eq!(
        parked.len(),
        2,
        "parked once per delivery of the batch, each explained"
    );
    let headers = parked[0]
        .delivery
        .properties
        .headers()
        .clone()
        .expect("headers");
    let text = |k: &str| match headers.inner().get(k) {
        Some(lapin::types::AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("{k}: {other:?}"),
    };
    assert!(text(shared::topology::parked::REASON).contains("invalid protobuf body"));
    assert_eq!(text(shared::topology::parked::ORIGINAL_QUEUE), queue);
    assert_eq!(parked[0].delivery.data, b"not a protobuf envelope");
    local::stack::delete_topology(&cfg, &specs)
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn a_message_postgres_refuses_is_parked_on_the_real_dead_letter_queue_with_its_sqlstate() {
    let database_url = shared::testing::fresh_database().await;
    let prefix = shared::testing::random_prefix();
    let cfg = shared::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(database_url.clone()),
        "ORDERFLOW_PREFIX" => Some(prefix.clone()),
        _ => std::env::var(k).ok(),
    })
    .expect("config");
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    local::stack::prepare(&cfg, &specs)
        .await
        .expect("migrations and topology");
    let ctx = shared::context::Context::new(cfg.clone()).expect("context");
    inventory::upsert_products(
        &ctx,
        &[inventory::ProductSeed {
            product_id: "sku-a".into(),
            name: "A".into(),
            price_cents: 100,
            currency: "EUR".into(),
            stock: 10,
        }],
    )
    .await
    .expect("seed");

    // Decodes fine, but its occurred_at is past the end of Postgres' timestamps: the
    // inbox statement of its chunk is refused (SQLSTATE 22008), whatever the retry.
    let queue = ctx.names.queue("inventory-reserve");
    let (a, b) = (
        created(&uuid::Uuid::now_v7().to_string()),
        created(&uuid::Uuid::now_v7().to_string()),
    );
    let mut bad = created(&uuid::Uuid::now_v7().to_string());
    bad.occurred_at_ms = i64::MAX;
    let msg = |e: &Envelope| {
        let out = shared::publisher::OutMessage::event(&ctx.names, e, Encoding::Protobuf);
        shared::rmq::message_from_amqp(&shared::publisher::amqp_properties(&out), &out.body, false)
    };
    let event = shared::rmq::event_for_queue(&queue, "/", vec![msg(&a), msg(&bad), msg(&b)]);
    let f: Arc<dyn shared::Function> = inventory::functions::reserve(&ctx);
    let report: shared::runner::BatchReport = serde_json::from_value(
        f.invoke(serde_json::to_value(&event).expect("json"))
            .await
            .expect("the batch succeeds: the refused message is not retried"),
    )
    .expect("report");
    assert_eq!(
        (report.processed, report.parked.len()),
        (2, 1),
        "{report:?}"
    );
    assert_eq!(
        report.parked[0].message_id.as_deref(),
        Some(bad.event_id.as_str())
    );
    assert!(
        report.parked[0].reason.contains("SQLSTATE 22008"),
        "{report:?}"
    );
    let levels = inventory::stock_levels(&ctx.pool).await.expect("stock");
    assert_eq!(
        levels[0].available, 8,
        "the two good orders reserved once each"
    );

    let conn = shared::publisher::connect(&cfg.amqp_url, "test")
        .await
        .expect("broker");
    let ch = conn.create_channel().await.expect("channel");
    let dlq = ctx.names.dead_letter_queue("inventory-reserve");
    let parked = ch
        .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("the refused message is in the dead-letter queue");
    assert_eq!(
        parked
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str()),
        Some(bad.event_id.as_str())
    );
    let reason = match parked
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(shared::topology::parked::REASON))
    {
        Some(lapin::types::AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("no reason: {other:?}"),
    };
    assert!(reason.contains("SQLSTATE 22008"), "{reason}");
    let _ = conn.close(200, "done".into()).await;
    local::stack::delete_topology(&cfg, &specs)
        .await
        .expect("cleanup");
}
