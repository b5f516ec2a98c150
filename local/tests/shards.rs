//! Sharded queue functions on the real broker: one order's events reach one shard in
//! publish order; changing the shard count while messages are in flight loses and doubles
//! nothing; a running stack keeps its invariants across 2 -> 4 -> 2 shards.

mod common;

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use serde_json::json;
use shared::publisher::{AmqpPublisher, OutMessage, Publish as _};
use shared::topology::{Names, QueueSpec};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A context for broker work only (its database pool is never used, so never connects).
fn broker_ctx(prefix: &str) -> shared::context::Context {
    let cfg = common::config("postgres://postgres@127.0.0.1:5432/postgres", prefix);
    shared::context::Context::new(cfg).expect("context")
}

fn event(names: &Names, seq: u64, order: &str) -> OutMessage {
    OutMessage {
        exchange: names.events_exchange(),
        routing_key: "order.created".into(),
        body: seq.to_string().into_bytes(),
        content_type: "text/plain".into(),
        message_id: Some(seq.to_string()),
        type_: Some("order.created".into()),
        correlation_id: Some(order.to_string()),
        timestamp_ms: None,
        headers: Vec::new(),
    }
}

async fn declare(names: &Names, spec: &QueueSpec) {
    let conn = shared::publisher::connect(&amqp_url(), "shards-test")
        .await
        .expect("RabbitMQ reachable (see README: services)");
    let ch = conn.create_channel().await.expect("channel");
    shared::topology::declare(&ch, names, std::slice::from_ref(spec))
        .await
        .expect("declare (is rabbitmq_consistent_hash_exchange enabled? see README)");
    let _ = conn.close(200, "declared".into()).await;
}

async fn exists(conn: &lapin::Connection, queue: &str) -> bool {
    let ch = conn.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .is_ok()
}

/// Removes the test's queues (every shard count it may have used) and exchanges.
async fn cleanup(names: &Names, stem: &str) {
    let Ok(conn) = shared::publisher::connect(&amqp_url(), "shards-test").await else {
        return;
    };
    let mut queues = vec![stem.to_string()];
    queues.extend((0..8).map(|i| format!("{stem}.{i}")));
    for q in queues {
        for name in [names.queue(&q), names.dead_letter_queue(&q)] {
            if let Ok(ch) = conn.create_channel().await {
                let _ = ch
                    .queue_delete(name.as_str().into(), Default::default())
                    .await;
            }
        }
    }
    for x in [
        names.shard_exchange(stem),
        names.events_exchange(),
        names.dead_letter_exchange(),
    ] {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .exchange_delete(x.as_str().into(), Default::default())
                .await;
        }
    }
    let _ = conn.close(200, "cleaned".into()).await;
}

#[tokio::test]
async fn every_event_of_one_order_reaches_one_shard_in_publish_order() {
    let names = Names::new(shared::testing::random_prefix());
    let spec = QueueSpec {
        queue: "fn".into(),
        routing_keys: vec!["order.*".into()],
        shards: 4,
    };
    declare(&names, &spec).await;
    let publisher = AmqpPublisher::new(amqp_url());
    let orders: Vec<String> = (0..24).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    // Interleaved: every order's events are spread over the whole run.
    let msgs: Vec<OutMessage> = (0..480u64)
        .map(|seq| event(&names, seq, &orders[seq as usize % orders.len()]))
        .collect();
    for chunk in msgs.chunks(40) {
        publisher
            .publish(chunk)
            .await
            .expect("every event routes (mandatory) and is confirmed");
    }

    let conn = shared::publisher::connect(&amqp_url(), "shards-test")
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    // order id -> (queues it was found on, sequence numbers in queue order)
    let mut seen: BTreeMap<String, (BTreeSet<String>, Vec<u64>)> = BTreeMap::new();
    let mut per_queue: BTreeMap<String, usize> = BTreeMap::new();
    for q in spec.broker_queues() {
        let queue = names.queue(&q);
        while let Some(m) = ch
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            let order = m
                .delivery
                .properties
                .correlation_id()
                .as_ref()
                .expect("correlation id")
                .to_string();
            let seq: u64 = String::from_utf8_lossy(&m.delivery.data)
                .parse()
                .expect("seq");
            let e = seen.entry(order).or_default();
            e.0.insert(q.clone());
            e.1.push(seq);
            *per_queue.entry(q.clone()).or_default() += 1;
        }
    }
    assert_eq!(
        per_queue.values().sum::<usize>(),
        msgs.len(),
        "every event lands once: {per_queue:?}"
    );
    assert_eq!(seen.len(), orders.len());
    for (order, (queues, seqs)) in &seen {
        assert_eq!(queues.len(), 1, "order {order} spread over {queues:?}");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "order {order} out of publish order: {seqs:?}"
        );
        assert_eq!(seqs.len(), msgs.len() / orders.len());
    }
    assert!(
        per_queue.len() > 1,
        "24 orders over 4 shards all hashed to one: {per_queue:?}"
    );

    // A shard's dead-letter path routes (a park is a mandatory publish to the DLX with the
    // shard queue's name) and ends in that shard's dead-letter queue.
    let mut park = event(&names, 9999, &orders[0]);
    park.exchange = names.dead_letter_exchange();
    park.routing_key = names.queue("fn.2");
    publisher
        .publish(&[park])
        .await
        .expect("a park from shard 2 routes");
    let parked = ch
        .basic_get(
            names.dead_letter_queue("fn.2").as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic.get");
    assert!(parked.is_some(), "the park reached fn.2.dlq");
    let _ = conn.close(200, "done".into()).await;
    cleanup(&names, "fn").await;
}

/// Consumes one queue until the queue is deleted (the broker then cancels the consumer),
/// counting each message id it acknowledges.
fn consume(
    queue: String,
    seen: Arc<Mutex<HashMap<u64, u32>>>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        use futures::StreamExt as _;
        let conn = shared::publisher::connect(&amqp_url(), "shards-consumer").await?;
        let ch = conn.create_channel().await?;
        ch.basic_qos(20, BasicQosOptions::default()).await?;
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "shards-test".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        while let Some(d) = consumer.next().await {
            let d = d?;
            let seq: u64 = String::from_utf8_lossy(&d.data).parse()?;
            // Slower than the publisher, so the queues hold a backlog when they are retired.
            tokio::time::sleep(Duration::from_millis(4)).await;
            *seen.lock().expect("lock").entry(seq).or_default() += 1;
            d.ack(BasicAckOptions::default()).await?;
        }
        let _ = conn.close(200, "done".into()).await;
        Ok(())
    })
}

#[tokio::test]
async fn no_event_is_lost_or_doubled_while_shards_go_from_1_to_4_to_2_to_1() {
    let prefix = shared::testing::random_prefix();
    let ctx = broker_ctx(&prefix);
    let names = ctx.names.clone();
    let mut spec = QueueSpec {
        queue: "fn".into(),
        routing_keys: vec!["order.created".into(), "order.confirmed".into()],
        shards: 1,
    };
    declare(&names, &spec).await;
    let seen: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let mut consumers = vec![consume(names.queue("fn"), seen.clone())];

    // Publishes until told to stop; every publish is mandatory and confirmed, so a message
    // that found no queue (a gap in the routing) fails the test here.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publishing = {
        let (stop, published, names) = (stop.clone(), published.clone(), names.clone());
        tokio::spawn(async move {
            let publisher = AmqpPublisher::new(amqp_url());
            let orders: Vec<String> = (0..50).map(|_| uuid::Uuid::now_v7().to_string()).collect();
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<OutMessage> = (seq..seq + 10)
                    .map(|s| {
                        let mut m = event(&names, s, &orders[(s * 7 % 50) as usize]);
                        if s.is_multiple_of(3) {
                            m.routing_key = "order.confirmed".into();
                        }
                        m
                    })
                    .collect();
                publisher.publish(&batch).await?;
                seq += 10;
                published.store(seq, Ordering::SeqCst);
                // About 500/s: twice what one consumer takes, so a backlog builds at one shard and
                // drains at four.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(seq)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut backlog_when_retired = 0u64;
    for to in [4usize, 2, 1] {
        let change = local::reshard::Change {
            spec: spec.clone(),
            to,
        };
        let conn = shared::publisher::connect(&amqp_url(), "reshard-test")
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        local::reshard::reroute(&ch, &names, &change)
            .await
            .unwrap_or_else(|e| panic!("reroute {} -> {to}: {e:#}", spec.shards));
        let _ = conn.close(200, "rerouted".into()).await;
        let retired: Vec<String> = change.retired().iter().map(|q| names.queue(q)).collect();
        let probe = local::broker::Probe::open(&ctx).await.expect("probe");
        for p in probe.queues(&retired).await {
            backlog_when_retired += p.depth.map(|d| d.ready).unwrap_or(0);
        }
        probe.close().await;
        // The new queues' consumers (the new deployment's triggers) start.
        let before = spec.broker_queues();
        for q in shared::topology::shard_queues(&spec.queue, to) {
            if !before.contains(&q) {
                consumers.push(consume(names.queue(&q), seen.clone()));
            }
        }
        // Let traffic flow on the new routing, then drain and prune the old queues.
        tokio::time::sleep(Duration::from_millis(700)).await;
        local::reshard::wait_drained(&ctx, &retired, Duration::from_secs(60))
            .await
            .expect("retired queues drain");
        spec.shards = to;
        let pruned = local::reshard::prune_queues(&ctx, std::slice::from_ref(&spec), false)
            .await
            .expect("prune");
        let deleted: BTreeSet<String> = pruned
            .iter()
            .filter(|p| p.deleted)
            .map(|p| p.queue.clone())
            .collect();
        assert_eq!(
            deleted,
            retired.iter().cloned().collect::<BTreeSet<_>>(),
            "prune deletes exactly the retired queues: {pruned:?}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let total = publishing
        .await
        .expect("publisher task")
        .expect("every publish routed and confirmed");
    assert!(
        total >= 1000,
        "only {total} messages published: too few to test anything"
    );
    assert!(
        backlog_when_retired > 0,
        "no retired queue held a message when it was unbound: nothing was in flight"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let consumed = seen.lock().expect("lock").len() as u64;
        if consumed >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for a stray duplicate to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().expect("lock").clone();
    let missing: Vec<u64> = (0..total).filter(|s| !seen.contains_key(s)).collect();
    let doubled: Vec<(u64, u32)> = seen
        .iter()
        .filter(|(_, n)| **n != 1)
        .map(|(s, n)| (*s, *n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {total} lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(doubled.is_empty(), "consumed more than once: {doubled:?}");
    assert_eq!(seen.len() as u64, total);
    println!(
        "{total} published, each consumed once; {backlog_when_retired} were waiting in queues \
         as they were unbound"
    );

    // Back at one shard: the plain queue only, no hash exchange, no shard queues.
    let conn = shared::publisher::connect(&amqp_url(), "shards-test")
        .await
        .expect("connect");
    assert!(exists(&conn, &names.queue("fn")).await);
    for i in 0..4 {
        assert!(!exists(&conn, &names.queue(&format!("fn.{i}"))).await);
    }
    let ch = conn.create_channel().await.expect("channel");
    let passive = lapin::options::ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    assert!(
        ch.exchange_declare(
            names.shard_exchange("fn").as_str().into(),
            lapin::ExchangeKind::Custom(shared::topology::CONSISTENT_HASH.into()),
            passive,
            FieldTable::default(),
        )
        .await
        .is_err(),
        "the hash exchange is gone at one shard"
    );
    let _ = conn.close(200, "done".into()).await;
    cleanup(&names, "fn").await;
    for c in consumers {
        c.abort();
    }
}

#[tokio::test]
async fn a_running_stack_keeps_every_invariant_across_2_4_2_shards() {
    let two = local::template::with_shards(local::template::EMBEDDED, &[("all".into(), 2)])
        .expect("template at 2 shards");
    let four = local::template::with_shards(local::template::EMBEDDED, &[("all".into(), 4)])
        .expect("template at 4 shards");
    let specs_two = local::template::parse(&two).expect("parses");
    let specs_four = local::template::parse(&four).expect("parses");
    let db = shared::testing::fresh_database().await;
    let cfg = common::config(&db, &shared::testing::random_prefix());

    let app = common::start_with_template(cfg.clone(), &two).await;
    app.seed(&[("sku-a", 1200, 1000), ("sku-b", 800, 10)]).await;
    let token = app.user().await;
    let mut placed = Vec::new();
    for i in 0..30 {
        placed.push(place(&app, &token, i).await);
    }

    // 2 -> 4: the new shards are declared and bound; then the runner restarts on the
    // template at 4 (a deploy, locally), with the first orders still in flight.
    let ctx = app.stack.ctx.clone();
    let changes = local::reshard::changes(&specs_two, &["all=4".into()]).expect("changes");
    assert_eq!(
        changes.len(),
        specs_two
            .iter()
            .filter(|f| f
                .triggers
                .iter()
                .any(|t| matches!(t, local::template::Trigger::Mq { .. })))
            .count()
    );
    reroute_all(&ctx, &changes).await;
    let common::App { stack, .. } = app;
    stack.stop().await;
    let app = common::start_with_template(cfg.clone(), &four).await;
    for i in 30..60 {
        placed.push(place(&app, &token, i).await);
    }

    // 4 -> 2: shards 2 and 3 are unbound and drained by the running 4-shard consumers,
    // then the runner restarts at 2 and the drained queues are pruned.
    let changes = local::reshard::changes(&specs_four, &["all=2".into()]).expect("changes");
    reroute_all(&ctx, &changes).await;
    for i in 60..75 {
        placed.push(place(&app, &token, i).await);
    }
    let retired: Vec<String> = changes
        .iter()
        .flat_map(|c| c.retired())
        .map(|q| ctx.names.queue(&q))
        .collect();
    assert_eq!(retired.len(), 2 * changes.len());
    local::reshard::wait_drained(&ctx, &retired, Duration::from_secs(60))
        .await
        .expect("retired shards drain");
    let common::App { stack, .. } = app;
    stack.stop().await;
    let app = common::start_with_template(cfg.clone(), &two).await;
    let pruned = local::reshard::prune(&ctx, &specs_two, false)
        .await
        .expect("prune");
    assert!(
        pruned.iter().all(|p| p.deleted),
        "every retired shard pruned: {pruned:?}"
    );
    assert_eq!(pruned.len(), retired.len());
    for i in 75..90 {
        placed.push(place(&app, &token, i).await);
    }

    let mut confirmed = 0;
    for id in &placed {
        let body = app.final_state(&token, id).await;
        if body["status"] == "CONFIRMED" {
            confirmed += 1;
        }
    }
    assert!(
        confirmed > 0 && confirmed < placed.len(),
        "a mix of outcomes"
    );
    app.verify().await;
    app.stop().await;
}

/// Order `i` of the test: a mix of good and declined cards, some on a scarce product.
async fn place(app: &common::App, token: &str, i: usize) -> String {
    let card = if i.is_multiple_of(5) {
        "tok_chargeDeclined"
    } else {
        "tok_visa"
    };
    let sku = if i.is_multiple_of(4) {
        "sku-b"
    } else {
        "sku-a"
    };
    app.order(token, json!([{"product_id": sku, "quantity": 1}]), card)
        .await
}

async fn reroute_all(ctx: &shared::context::Context, changes: &[local::reshard::Change]) {
    let conn = shared::publisher::connect(&ctx.config.amqp_url, "reshard-test")
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    for c in changes {
        local::reshard::reroute(&ch, &ctx.names, c)
            .await
            .unwrap_or_else(|e| panic!("reroute {}: {e:#}", c.spec.queue));
    }
    let _ = conn.close(200, "rerouted".into()).await;
}
