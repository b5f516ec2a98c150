//! `orderflow topology` against the local RabbitMQ: it declares what the template needs (an
//! event published with a routing key lands in every bound queue), is idempotent, refuses to
//! delete queues that hold messages unless forced, and `--delete` leaves nothing behind.

use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use local::topology::{TopologyArgs, run};
use shared::topology::Names;

fn config(prefix: &str) -> shared::Config {
    shared::Config::from_lookup(|k| match k {
        "ORDERFLOW_PREFIX" => Some(prefix.to_string()),
        _ => std::env::var(k).ok(),
    })
    .expect("config")
}

/// Message count of a queue, or None when it does not exist.
async fn depth(conn: &lapin::Connection, queue: &str) -> Option<u32> {
    let ch = conn.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .ok()?;
    let _ = ch.close(200, "done".into()).await;
    Some(q.message_count())
}

#[tokio::test]
async fn topology_declares_routes_refuses_to_drop_messages_and_deletes_cleanly() {
    let prefix = shared::testing::random_prefix();
    let cfg = config(&prefix);
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let names = Names::new(prefix.clone());
    let args = TopologyArgs {
        url: Some(cfg.amqp_url.clone()),
        ..Default::default()
    };

    assert!(
        run(cfg.clone(), &specs, args.clone())
            .await
            .expect("declared")
    );
    // Declaring again changes nothing and does not fail.
    assert!(
        run(cfg.clone(), &specs, args.clone())
            .await
            .expect("redeclared")
    );

    let conn = shared::publisher::connect(&cfg.amqp_url, "topology-test")
        .await
        .expect("broker");
    for q in local::template_queues(&specs) {
        assert_eq!(depth(&conn, &names.queue(&q)).await, Some(0), "{q}");
        assert_eq!(
            depth(&conn, &names.dead_letter_queue(&q)).await,
            Some(0),
            "{q}.dlq"
        );
    }

    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirm = ch
        .basic_publish(
            names.events_exchange().as_str().into(),
            "order.created".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"{}",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
    assert!(
        confirm.take_message().is_none(),
        "order.created is routed, not returned"
    );
    for q in ["inventory-reserve", "payment-process", "notification-send"] {
        let mut n = None;
        // Confirmed means enqueued; the count may lag a moment on a quorum queue.
        for _ in 0..50 {
            n = depth(&conn, &names.queue(q)).await;
            if n == Some(1) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(n, Some(1), "order.created reaches {q}");
    }
    assert_eq!(depth(&conn, &names.queue("order-saga")).await, Some(0));

    let delete = TopologyArgs {
        delete: true,
        ..args.clone()
    };
    assert!(
        !run(cfg.clone(), &specs, delete.clone())
            .await
            .expect("refusal is not an error"),
        "queues with messages are not deleted without --force"
    );
    assert_eq!(
        depth(&conn, &names.queue("inventory-reserve")).await,
        Some(1)
    );

    let forced = TopologyArgs {
        force: true,
        ..delete
    };
    assert!(run(cfg.clone(), &specs, forced).await.expect("deleted"));
    for q in local::template_queues(&specs) {
        assert_eq!(depth(&conn, &names.queue(&q)).await, None, "{q} is gone");
        assert_eq!(depth(&conn, &names.dead_letter_queue(&q)).await, None);
    }
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_dry_run_never_connects() {
    let cfg = config("dry.");
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let args = TopologyArgs {
        url: Some("amqps://nobody:secret@broker.invalid:5671/%2f".into()),
        dry_run: true,
        ..Default::default()
    };
    assert!(run(cfg, &specs, args).await.expect("dry run"));
}
