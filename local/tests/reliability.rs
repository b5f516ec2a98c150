//! Reliability on the real servers: the outbox relay sends what a crash between commit and
//! publish left behind, and the dead-letter console shows, replays (safely) and discards.

mod common;

use serde_json::json;
use shared::publisher::{HeaderVal, OutMessage};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_events_a_crash_between_commit_and_publish_left_in_the_outbox() {
    let db = shared::testing::fresh_database().await;
    let mut cfg = common::config(&db, &shared::testing::random_prefix());
    // Every order-create "crashes" after its commit: order.created only leaves via the relay.
    cfg.faults = shared::faults::Faults::parse("crash@orders=1").expect("faults");
    let app = common::start_with(cfg).await;
    app.seed(&[("sku-a", 1000, 10)]).await;
    let token = app.user().await;
    let id = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 1}]),
            "tok_visa",
        )
        .await;
    let (unpublished, _) = shared::db::outbox_backlog(&app.stack.ctx.pool, "orders")
        .await
        .expect("backlog");
    assert_eq!(
        unpublished, 1,
        "order.created is committed but not published"
    );
    let order = app.final_state(&token, &id).await; // the relay (min age 5 s) gets it going
    assert_eq!(order["status"], "CONFIRMED");
    app.verify().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_replayed_safely_and_discarded_with_an_audit_trail() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 10)]).await;
    let token = app.user().await;
    let id = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 2}]),
            "tok_visa",
        )
        .await;
    assert_eq!(app.final_state(&token, &id).await["status"], "CONFIRMED");
    app.quiet().await;
    let ctx = &app.stack.ctx;

    // A valid event that was already processed sits in inventory-reserve's DLQ (as after a
    // broker dead-lettering), and an undecodable body in payment-process's.
    let (body,): (Vec<u8>,) =
        sqlx::query_as("SELECT envelope FROM orders.outbox WHERE event_type = 'order.created'")
            .fetch_one(&ctx.pool)
            .await
            .expect("order.created in the outbox");
    let created = shared::Envelope::decode(&body, shared::Encoding::Protobuf).expect("envelope");
    let mut valid = OutMessage::event(&ctx.names, &created, shared::Encoding::Protobuf);
    valid.exchange = ctx.names.dead_letter_exchange();
    valid.routing_key = ctx.names.queue("inventory-reserve");
    valid.headers.extend([
        (
            shared::topology::parked::REASON.to_string(),
            HeaderVal::Str("test: held back".into()),
        ),
        (
            shared::topology::parked::ORIGINAL_QUEUE.to_string(),
            HeaderVal::Str(ctx.names.queue("inventory-reserve")),
        ),
        (
            shared::topology::parked::ORIGINAL_ROUTING_KEY.to_string(),
            HeaderVal::Str("order.created".into()),
        ),
        (
            shared::topology::parked::ATTEMPTS.to_string(),
            HeaderVal::Int(3),
        ),
        (
            shared::topology::parked::PARKED_AT.to_string(),
            HeaderVal::Int(chrono::Utc::now().timestamp_millis()),
        ),
    ]);
    let mut garbage = valid.clone();
    garbage.routing_key = ctx.names.queue("payment-process");
    garbage.body = vec![0xde, 0xad, 0xbe, 0xef];
    garbage.message_id = Some("garbage".into());
    for (k, v) in &mut garbage.headers {
        if k == shared::topology::parked::ORIGINAL_QUEUE {
            *v = HeaderVal::Str(ctx.names.queue("payment-process"));
        }
    }
    ctx.publisher
        .publish(&[valid, garbage])
        .await
        .expect("park");

    let console = local::dlq::Console::open(ctx, &app.queues)
        .await
        .expect("console");
    assert_eq!(
        console.letters.len(),
        2,
        "{:?}",
        console
            .letters
            .iter()
            .map(|(d, _)| local::dlq::list_line(d))
            .collect::<Vec<_>>()
    );
    let by_type = local::dlq::matching(
        &console,
        &local::dlq::Filter {
            queue: Some("inventory-reserve".into()),
            ..Default::default()
        },
        &ctx.names,
    );
    assert_eq!(by_type.len(), 1);
    let valid_id = by_type[0].id.clone();
    assert_eq!(by_type[0].attempts, 3);
    let bad = console
        .letters
        .iter()
        .find(|(d, _)| d.id != valid_id)
        .map(|(d, _)| d.clone())
        .expect("bad one");
    let view = local::dlq::payload_view(&bad);
    assert_eq!(view["undecodable"], true);
    assert_eq!(view["hex"], "deadbeef");
    let decoded = local::dlq::payload_view(by_type[0]);
    assert_eq!(decoded["decoded"]["eventType"], "order.created");
    assert!(
        console
            .find("nope")
            .unwrap_err()
            .to_string()
            .contains("no dead letter")
    );

    // Replay the valid one: every consumer has seen it, nothing happens twice.
    let i = console.find(&valid_id).expect("found");
    console.replay(ctx, i).await.expect("replayed");
    local::dlq::audit(ctx, "replay", &console.letters[i].0, false)
        .await
        .expect("audit");
    let j = console.find(&bad.id).expect("found");
    console.discard(j).await.expect("discarded");
    local::dlq::audit(ctx, "discard", &bad, false)
        .await
        .expect("audit");
    console.close().await;

    app.quiet().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.quiet().await;
    let again = local::dlq::Console::open(ctx, &app.queues)
        .await
        .expect("console");
    assert!(again.letters.is_empty(), "both handled");
    again.close().await;
    let log = local::dlq::audit_log(ctx).await.expect("audit log");
    assert_eq!(
        log.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["discard", "replay"]
    );
    let (_, stock) = app.send("GET", "/products/sku-a/stock", None, None).await;
    assert_eq!(
        stock["available"], 8,
        "the replayed order.created reserved nothing twice"
    );
    let payments = payment::payments(&ctx.pool).await.expect("payments");
    assert_eq!(payments.len(), 1);
    app.verify().await;
    app.stop().await;
}

#[tokio::test]
async fn replaying_a_dead_letter_no_queue_is_bound_for_fails_and_keeps_the_dead_letter() {
    // The real topology routes every key to order-timeline (`#`); without it, stock.released
    // has no consumer, and a replay of it would be acked by the broker and dropped.
    let cfg = common::config(
        &shared::testing::admin_url(),
        &shared::testing::random_prefix(),
    );
    let specs: Vec<_> = local::template::parse(local::template::EMBEDDED)
        .expect("template")
        .into_iter()
        .filter(|s| s.binary != "order-timeline")
        .collect();
    local::stack::declare_topology(&cfg, &specs)
        .await
        .expect("topology");
    let ctx = shared::context::Context::new(cfg.clone()).expect("context");
    let queues = local::template_queues(&specs);

    let released = shared::Envelope::new(
        shared::contracts::Payload::StockReleased(shared::contracts::StockReleased {
            order_id: "ord-1".into(),
            items: vec![],
        }),
        None,
    );
    let mut letter = OutMessage::event(&ctx.names, &released, shared::Encoding::Protobuf);
    letter.exchange = ctx.names.dead_letter_exchange();
    letter.routing_key = ctx.names.queue("inventory-release");
    letter.headers.extend([
        (
            shared::topology::parked::REASON.to_string(),
            HeaderVal::Str("test: held back".into()),
        ),
        (
            shared::topology::parked::ORIGINAL_QUEUE.to_string(),
            HeaderVal::Str(ctx.names.queue("inventory-release")),
        ),
        (
            shared::topology::parked::ORIGINAL_ROUTING_KEY.to_string(),
            HeaderVal::Str("stock.released".into()),
        ),
    ]);
    ctx.publisher.publish(&[letter]).await.expect("park");

    let console = local::dlq::Console::open(&ctx, &queues)
        .await
        .expect("console");
    assert_eq!(console.letters.len(), 1);
    let err = console
        .replay(&ctx, 0)
        .await
        .expect_err("nothing would receive the replay");
    assert!(err.to_string().contains("no queue is bound"), "{err:#}");
    console.close().await;

    let again = local::dlq::Console::open(&ctx, &queues)
        .await
        .expect("console");
    assert_eq!(again.letters.len(), 1, "the dead letter is still there");
    again.discard(0).await.expect("discard");
    again.close().await;
    local::stack::delete_topology(&cfg, &specs)
        .await
        .expect("cleanup");
}
