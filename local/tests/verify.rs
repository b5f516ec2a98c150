//! `orderflow verify` against real state: a small run on the real servers, then each
//! invariant broken in the database, the broker or the cache the way a bug would break it;
//! verify must name the violation, and pass again once the state is repaired. (The pure
//! checks have a unit test per way they fail in `local/src/verify/checks/tests.rs`; this
//! shows the snapshot reads what they judge.)

mod common;

use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeleteOptions};
use local::verify::{self, Check, Expect};
use serde_json::json;
use std::time::Duration;

async fn checks(app: &common::App) -> Vec<Check> {
    verify::run(&app.stack.ctx, &app.queues, &Expect::default())
        .await
        .expect("verify runs")
}

/// Verify fails, and one of its violations contains `expect`.
async fn fails_with(app: &common::App, expect: &str) {
    let all = checks(app).await;
    let lines: Vec<String> = all.iter().map(Check::line).collect();
    assert!(
        all.iter()
            .any(|c| c.violations.iter().any(|v| v.contains(expect))),
        "expected a violation containing {expect:?}:\n{}",
        lines.join("\n")
    );
}

async fn passes(app: &common::App) {
    let failed: Vec<String> = checks(app)
        .await
        .iter()
        .filter(|c| !c.ok())
        .map(Check::line)
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

async fn sql(app: &common::App, statement: &str) {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&app.stack.ctx.pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_on_each_broken_invariant_and_passes_once_repaired() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 10), ("sku-b", 500, 1)]).await;
    let token = app.user().await;
    let confirmed = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 2}]),
            "tok_visa",
        )
        .await;
    // Good card, too many units: authorized, then voided when the saga cancels it.
    let voided = app
        .order(
            &token,
            json!([{"product_id": "sku-b", "quantity": 3}]),
            "tok_visa",
        )
        .await;
    for id in [&confirmed, &voided] {
        app.final_state(&token, id).await;
    }
    app.verify().await;

    // A pending order.
    sql(
        &app,
        &format!("UPDATE orders.orders SET status = 'PENDING' WHERE order_id = '{confirmed}'"),
    )
    .await;
    fails_with(&app, "is still PENDING").await;
    sql(
        &app,
        &format!("UPDATE orders.orders SET status = 'CONFIRMED' WHERE order_id = '{confirmed}'"),
    )
    .await;
    passes(&app).await;

    // A unit leaks off the shelf with no ledger row; a re-seed afterwards does not hide it.
    sql(
        &app,
        "UPDATE inventory.products SET available = available - 1 WHERE product_id = 'sku-a'",
    )
    .await;
    fails_with(
        &app,
        "sku-a: shelf says 7 available, the stock ledger says 8",
    )
    .await;
    app.seed(&[("sku-a", 1000, 20), ("sku-b", 500, 1)]).await;
    fails_with(
        &app,
        "sku-a: shelf says 20 available, the stock ledger says 21",
    )
    .await;
    // Repaired by recording the loss.
    sql(&app, "INSERT INTO inventory.stock_movements (product_id, kind, delta) VALUES ('sku-a', 'restock', -1)").await;
    passes(&app).await;

    // A cancelled order whose authorization was never voided (ledger and gateway agree).
    let key: String = sqlx::query_scalar(
        "SELECT idempotency_key FROM payments.ledger WHERE order_id = $1 AND kind = 'void'",
    )
    .bind(&voided)
    .fetch_one(&app.stack.ctx.pool)
    .await
    .expect("the void is in the ledger");
    sql(&app, &format!("CREATE TABLE payments.kept AS SELECT * FROM payments.ledger WHERE idempotency_key = '{key}'")).await;
    sql(&app, &format!("CREATE TABLE gateway_sim.kept AS SELECT * FROM gateway_sim.calls WHERE idempotency_key = '{key}'")).await;
    sql(
        &app,
        &format!("DELETE FROM payments.ledger WHERE idempotency_key = '{key}'"),
    )
    .await;
    sql(
        &app,
        &format!("DELETE FROM gateway_sim.calls WHERE idempotency_key = '{key}'"),
    )
    .await;
    fails_with(&app, "authorization left open").await;
    sql(
        &app,
        "INSERT INTO payments.ledger SELECT * FROM payments.kept",
    )
    .await;
    sql(
        &app,
        "INSERT INTO gateway_sim.calls SELECT * FROM gateway_sim.kept",
    )
    .await;
    passes(&app).await;

    // A second authorization at the gateway that the ledger never recorded (a call whose
    // transaction rolled back, retried under another key).
    sql(&app, &format!(
        "INSERT INTO gateway_sim.calls (idempotency_key, kind, order_id, amount_cents, currency, outcome)
         VALUES ('authorize:stray', 'authorize', '{confirmed}', 2000, 'EUR', 'approved')"
    )).await;
    fails_with(&app, "was authorized 2 times").await;
    fails_with(&app, "is not in the ledger").await;
    sql(
        &app,
        "DELETE FROM gateway_sim.calls WHERE idempotency_key = 'authorize:stray'",
    )
    .await;
    passes(&app).await;

    // A notification stuck pending.
    sql(&app, &format!("UPDATE notifications.notifications SET status = 'pending' WHERE order_id = '{confirmed}' AND kind = 'order_confirmed'")).await;
    fails_with(&app, "is pending, not delivered").await;
    sql(
        &app,
        "UPDATE notifications.notifications SET status = 'delivered'",
    )
    .await;
    passes(&app).await;

    // An event marked unpublished.
    sql(&app, &format!("UPDATE orders.outbox SET published_at = NULL WHERE correlation_id = '{confirmed}' AND event_type = 'order.confirmed'")).await;
    fails_with(&app, "orders: 1 outbox rows unpublished").await;
    sql(
        &app,
        "UPDATE orders.outbox SET published_at = now() WHERE published_at IS NULL",
    )
    .await;
    passes(&app).await;

    // A stale cache entry.
    let redis = app.stack.ctx.redis.clone();
    let cache = inventory::RedisStockCache::from_context(&app.stack.ctx);
    let mut conn = redis.conn().await.expect("redis");
    let _: () = redis::cmd("SET")
        .arg(cache.key("sku-b"))
        .arg("1:99")
        .query_async(&mut conn)
        .await
        .expect("set");
    fails_with(
        &app,
        "stock cache of sku-b: cache says available 99 (version 1)",
    )
    .await;
    let _: () = redis::cmd("DEL")
        .arg(cache.key("sku-b"))
        .query_async(&mut conn)
        .await
        .expect("del");
    passes(&app).await;

    // A missing dead-letter queue must not hide a dead letter in the queues probed after it.
    let ctx = &app.stack.ctx;
    let conn = shared::publisher::connect(&ctx.config.amqp_url, "test")
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let first = ctx.names.dead_letter_queue(&app.queues[0]);
    let last_queue = app.queues.last().expect("queues").clone();
    ch.queue_delete(first.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete dlq");
    ch.basic_publish(
        "".into(),
        ctx.names.dead_letter_queue(&last_queue).as_str().into(),
        BasicPublishOptions::default(),
        b"not an event",
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    fails_with(&app, &format!("{first}: queue {first} is missing")).await;
    fails_with(&app, "dead letters without a reason").await;
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    local::stack::declare_topology(&ctx.config, &specs)
        .await
        .expect("declare");
    let dlq = ctx.names.dead_letter_queue(&last_queue);
    ch.queue_purge(dlq.as_str().into(), Default::default())
        .await
        .expect("purge");
    passes(&app).await;

    // A message waiting in a function queue nobody consumes, then one held unacknowledged:
    // neither is settled.
    let queue = ctx.names.queue(&last_queue);
    let ctx2 = shared::context::Context::new((*ctx.config).clone()).expect("context");
    app.stack.stop().await;
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"{}",
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let run = |ctx: shared::context::Context, queues: Vec<String>| async move {
        verify::run(&ctx, &queues, &Expect::default())
            .await
            .expect("verify")
    };
    let queues = local::template_queues(&specs);
    let found = |all: &[Check], what: &str| {
        all.iter()
            .any(|c| c.violations.iter().any(|v| v.contains(what)))
    };
    assert!(found(
        &run(ctx2.clone(), queues.clone()).await,
        "1 messages ready"
    ));
    let held = ch
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a message");
    // The management API reports unacknowledged counts once per statistics interval.
    let deadline = std::time::Instant::now() + local::broker::stats_interval() * 4;
    loop {
        if found(
            &run(ctx2.clone(), queues.clone()).await,
            "1 messages unacknowledged (in flight)",
        ) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the held message never showed as in flight"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    held.ack(Default::default()).await.expect("ack");
    local::broker::settled(&ctx2, &queues, Duration::from_secs(30))
        .await
        .expect("settles once acknowledged");
    let all = run(ctx2.clone(), queues.clone()).await;
    assert!(
        all.iter().all(Check::ok),
        "{:?}",
        all.iter().map(Check::line).collect::<Vec<_>>()
    );
    let _ = conn.close(200, "done".into()).await;
    local::stack::delete_topology(&ctx2.config, &specs)
        .await
        .expect("delete topology");
}
