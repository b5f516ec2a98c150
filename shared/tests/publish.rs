//! The publisher and the runner against the real local RabbitMQ (and Postgres), in a
//! topology of their own (a random name prefix): a message no queue is bound for is
//! returned by the broker and is a failed publish, never a silent loss; routed events and
//! parked messages (the dead-letter exchange has a binding per queue) still go through.

mod common;

use common::{SCHEMA, created};
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use shared::contracts::{Payload, StockReleased};
use shared::publisher::{AmqpPublisher, OutMessage, Publish, PublishError};
use shared::testing::TestEnv;
use shared::topology::{Names, QueueSpec};
use shared::{Encoding, Envelope};
use std::sync::Arc;

/// This test's broker objects: one queue bound to `order.created` only, with its
/// dead-letter queue; `delete` removes them.
struct Topology {
    url: String,
    names: Names,
    queue: String,
}

impl Topology {
    async fn declare(names: Names, bound_to: &[&str]) -> Self {
        let url = amqp_url();
        let conn = shared::publisher::connect(&url, "publish-test")
            .await
            .expect("test RabbitMQ reachable (see README: services)");
        let ch = conn.create_channel().await.expect("channel");
        let spec = QueueSpec {
            queue: "audit".into(),
            routing_keys: bound_to.iter().map(|k| k.to_string()).collect(),
            shards: 1,
        };
        shared::topology::declare(&ch, &names, &[spec])
            .await
            .expect("declare");
        let _ = conn.close(200, "declared".into()).await;
        Topology {
            url,
            queue: "audit".into(),
            names,
        }
    }

    async fn depth(&self) -> u32 {
        let conn = shared::publisher::connect(&self.url, "publish-test")
            .await
            .expect("broker");
        let ch = conn.create_channel().await.expect("channel");
        let q = ch
            .queue_declare(
                self.names.queue(&self.queue).as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists");
        let _ = conn.close(200, "probed".into()).await;
        q.message_count()
    }

    async fn delete(self) {
        let Ok(conn) = shared::publisher::connect(&self.url, "publish-test").await else {
            return;
        };
        let Ok(ch) = conn.create_channel().await else {
            return;
        };
        for q in [
            self.names.queue(&self.queue),
            self.names.dead_letter_queue(&self.queue),
        ] {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for ex in [
            self.names.events_exchange(),
            self.names.dead_letter_exchange(),
        ] {
            let _ = ch
                .exchange_delete(ex.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "deleted".into()).await;
    }
}

fn amqp_url() -> String {
    shared::Config::from_lookup(|k| std::env::var(k).ok())
        .expect("config")
        .amqp_url
}

fn released(cause: &Envelope) -> Envelope {
    Envelope::new(
        Payload::StockReleased(StockReleased {
            order_id: cause.correlation_id.clone(),
            items: vec![],
        }),
        Some(cause),
    )
}

fn publish_failures() -> f64 {
    shared::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix("orderflow_publish_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn an_event_no_queue_is_bound_for_is_unroutable_and_a_routed_one_is_confirmed() {
    let names = Names::new(shared::testing::random_prefix());
    let topology = Topology::declare(names.clone(), &["order.created"]).await;
    let publisher = AmqpPublisher::new(topology.url.clone());
    let order = created("ord-1", "a@example.com");
    let routed = OutMessage::event(&names, &order, Encoding::Protobuf);
    let lost = released(&order);
    let unroutable = OutMessage::event(&names, &lost, Encoding::Protobuf);

    publisher
        .publish(std::slice::from_ref(&routed))
        .await
        .expect("a bound routing key is confirmed");

    let failures = publish_failures();
    match publisher.publish(std::slice::from_ref(&unroutable)).await {
        Err(PublishError::Unroutable {
            count,
            exchange,
            routing_key,
            message_ids,
        }) => {
            assert_eq!(count, 1);
            assert_eq!(exchange, names.events_exchange());
            assert_eq!(routing_key, "stock.released");
            assert_eq!(message_ids, std::slice::from_ref(&lost.event_id));
        }
        other => panic!("expected Unroutable, got {other:?}"),
    }
    assert!(publish_failures() >= failures + 1.0, "counted as a failure");

    // In a batch, the returned message is told apart from the routed ones around it.
    let order2 = created("ord-2", "b@example.com");
    let batch = [
        routed.clone(),
        unroutable.clone(),
        OutMessage::event(&names, &order2, Encoding::Json),
    ];
    let err = publisher
        .publish(&batch)
        .await
        .expect_err("one message of the batch is unroutable");
    assert!(
        matches!(&err, PublishError::Unroutable { count: 1, message_ids, .. } if message_ids == std::slice::from_ref(&lost.event_id)),
        "{err:?}"
    );
    let ids = [order.event_uuid(), lost.event_uuid(), order2.event_uuid()];
    assert_eq!(err.routed(&ids), [order.event_uuid(), order2.event_uuid()]);

    // The channel is still good after a return: the next publish goes through.
    publisher
        .publish(std::slice::from_ref(&routed))
        .await
        .expect("still confirmed after an unroutable publish");
    assert_eq!(
        topology.depth().await,
        4,
        "every routed message reached the queue"
    );
    topology.delete().await;
}

#[tokio::test]
async fn a_parked_message_is_routed_by_the_dead_letter_binding_of_its_queue() {
    let names = Names::new(shared::testing::random_prefix());
    let topology = Topology::declare(names.clone(), &["order.created"]).await;
    let publisher = AmqpPublisher::new(topology.url.clone());
    let mut park = OutMessage::event(
        &names,
        &created("ord-1", "a@example.com"),
        Encoding::Protobuf,
    );
    park.exchange = names.dead_letter_exchange();
    park.routing_key = names.queue("audit");
    publisher
        .publish(std::slice::from_ref(&park))
        .await
        .expect("the queue's dead-letter queue is bound to its name");

    park.routing_key = names.queue("no-such-queue");
    let err = publisher
        .publish(&[park])
        .await
        .expect_err("no dead-letter queue for a queue that does not exist");
    assert!(matches!(err, PublishError::Unroutable { .. }), "{err:?}");
    topology.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_are_each_blamed_only_for_their_own_unroutable_messages() {
    // The local runner publishes from every function at once through one publisher; a
    // returned message must fail the publish it belongs to and no other.
    let names = Names::new(shared::testing::random_prefix());
    let topology = Topology::declare(names.clone(), &["order.created"]).await;
    let publisher = AmqpPublisher::new(topology.url.clone());
    // Interleaving is up to the scheduler: a few rounds make a mix-up show reliably.
    for round in 0..20 {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let publisher = publisher.clone();
            let names = names.clone();
            tasks.push(tokio::spawn(async move {
                let order = created(&format!("ord-{round}-{i}"), "a@example.com");
                let mut batch: Vec<OutMessage> = (0..20)
                    .map(|_| OutMessage::event(&names, &order, Encoding::Protobuf))
                    .collect();
                let lost = (i % 2 == 1).then(|| released(&order));
                if let Some(lost) = &lost {
                    batch.insert(10, OutMessage::event(&names, lost, Encoding::Protobuf));
                }
                (lost, publisher.publish(&batch).await)
            }));
        }
        for task in tasks {
            match task.await.expect("task") {
                (None, result) => result.expect("a batch with only routed messages succeeds"),
                (Some(lost), Err(PublishError::Unroutable { message_ids, .. })) => {
                    assert_eq!(message_ids, [lost.event_id])
                }
                (Some(_), other) => panic!("expected Unroutable, got {other:?}"),
            }
        }
    }
    topology.delete().await;
}

#[tokio::test]
async fn an_event_nobody_is_bound_to_stays_unpublished_in_the_outbox_and_the_relay_keeps_it() {
    let env = TestEnv::new().await;
    env.migrate(SCHEMA, &common::MIGRATOR).await;
    // order.created is bound, the stock.released the handler answers with is not.
    let topology = Topology::declare(env.ctx.names.clone(), &["order.created"]).await;
    let publisher: Arc<dyn Publish> = Arc::new(AmqpPublisher::new(topology.url.clone()));
    let ctx = shared::context::Context::with_publisher(
        (*env.ctx.config).clone(),
        env.ctx.pool.clone(),
        publisher,
    )
    .expect("context");

    struct Releases;
    #[async_trait::async_trait]
    impl shared::runner::MessageHandler for Releases {
        type Effect = ();
        fn name(&self) -> &'static str {
            common::NAME
        }
        fn schema(&self) -> &'static str {
            SCHEMA
        }
        async fn apply(
            &self,
            _tx: &mut sqlx::PgConnection,
            env: &Envelope,
        ) -> Result<shared::runner::Applied<()>, shared::HandleError> {
            Ok(shared::runner::Applied::events(vec![released(env)]))
        }
    }

    let order = created("ord-1", "a@example.com");
    let event = env.rmq_event("audit", std::slice::from_ref(&order), Encoding::Protobuf);
    let err = ctx
        .batch_runner(Releases)
        .run(&event)
        .await
        .expect_err("an unroutable event fails the batch");
    assert_eq!(err.committed, 1, "the message itself was applied");
    assert!(format!("{err}").contains("unroutable"), "{err}");
    let (unpublished, _) = shared::db::outbox_backlog(&ctx.pool, SCHEMA)
        .await
        .expect("backlog");
    assert_eq!(unpublished, 1, "stock.released stays in the outbox");

    // The redelivery skips the applied message and tries the leftover again: still kept.
    let again = ctx.batch_runner(Releases).run(&event).await;
    assert!(again.is_err(), "{again:?}");
    // So does the relay, which moves on with the rows that do route.
    let routable = created("ord-2", "b@example.com");
    shared::db::outbox_insert(
        &mut ctx.pool.acquire().await.expect("conn"),
        SCHEMA,
        std::slice::from_ref(&routable),
    )
    .await
    .expect("outbox row");
    let sent = shared::lambda::relay_older_than(&ctx, SCHEMA, std::time::Duration::ZERO, 500)
        .await
        .expect("relay pass");
    assert_eq!(sent, 1, "the routable row is published");
    let (unpublished, _) = shared::db::outbox_backlog(&ctx.pool, SCHEMA)
        .await
        .expect("backlog");
    assert_eq!(unpublished, 1, "the unroutable row is still there");
    assert_eq!(
        topology.depth().await,
        1,
        "only order.created reached the queue"
    );
    topology.delete().await;
}
