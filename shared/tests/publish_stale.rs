//! The publisher survives a connection that died while its execution environment was idle:
//! between two publishes of one publisher (two invocations of one function instance) the
//! broker closes the connection (management API `DELETE /api/connections/{name}`) while a
//! proxy holds back the broker's close frame, as a frozen Lambda environment never reads it.
//! The next publish finds a connection that looks open, fails on it, reconnects and
//! succeeds, without failing the batch.

mod common;

use common::created;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use shared::Encoding;
use shared::publisher::{AmqpPublisher, OutMessage, Publish};
use shared::topology::{Names, QueueSpec};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MANAGEMENT: &str = "http://127.0.0.1:15672";

fn amqp_url() -> String {
    shared::Config::from_lookup(|k| std::env::var(k).ok())
        .expect("config")
        .amqp_url
}

/// A TCP proxy to the broker. Once `freeze` is called, connections made so far stop
/// passing the broker's bytes on (the client never learns the broker closed them), and
/// the client's next write closes its socket, as a dead connection does.
struct Proxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    frozen_below: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let frozen_below = Arc::new(AtomicUsize::new(0));
        let (acc, frozen) = (accepted.clone(), frozen_below.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let id = acc.fetch_add(1, Ordering::SeqCst);
                let frozen = frozen.clone();
                let Ok(mut broker) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(async move {
                    let stale = || id < frozen.load(Ordering::SeqCst);
                    let (mut a, mut b) = ([0u8; 8192], [0u8; 8192]);
                    let mut broker_open = true;
                    loop {
                        tokio::select! {
                            n = client.read(&mut a) => match n {
                                Ok(n) if n > 0 && !stale() => {
                                    if broker.write_all(&a[..n]).await.is_err() { break; }
                                }
                                _ => break,
                            },
                            n = broker.read(&mut b), if broker_open => match n {
                                Ok(n) if n > 0 && !stale() => {
                                    if client.write_all(&b[..n]).await.is_err() { break; }
                                }
                                // Held back: the frozen client never sees the close.
                                _ => broker_open = false,
                            },
                        }
                    }
                });
            }
        });
        Proxy {
            port,
            accepted,
            frozen_below,
        }
    }

    fn freeze(&self) {
        self.frozen_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The broker URL through this proxy.
    fn url(&self, direct: &str) -> String {
        let mut url = url::Url::parse(direct).expect("AMQP_URL");
        let _ = url.set_host(Some("127.0.0.1"));
        let _ = url.set_port(Some(self.port));
        url.to_string()
    }
}

/// Closes, through the management API, the broker connection whose client-given name is
/// `name` (waiting for the management API to list it).
async fn close_connection(name: &str) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let conns: serde_json::Value = http
            .get(format!("{MANAGEMENT}/api/connections"))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .expect("RabbitMQ management API (see README: services)")
            .json()
            .await
            .expect("connections JSON");
        let found = conns.as_array().into_iter().flatten().find_map(|c| {
            (c["client_properties"]["connection_name"].as_str() == Some(name))
                .then(|| c["name"].as_str().map(str::to_string))
                .flatten()
        });
        if let Some(broker_name) = found {
            let mut url = url::Url::parse(MANAGEMENT).expect("url");
            url.path_segments_mut()
                .expect("base")
                .extend(["api", "connections", &broker_name]);
            let resp = http
                .delete(url)
                .basic_auth("guest", Some("guest"))
                .send()
                .await
                .expect("DELETE connection");
            assert!(
                resp.status().is_success(),
                "DELETE answered {}",
                resp.status()
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the management API never listed connection {name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_publish_after_the_broker_dropped_an_idle_connection_reconnects_and_succeeds() {
    let direct = amqp_url();
    let names = Names::new(shared::testing::random_prefix());
    let conn = shared::publisher::connect(&direct, "publish-stale-test")
        .await
        .expect("test RabbitMQ reachable (see README: services)");
    let ch = conn.create_channel().await.expect("channel");
    let spec = QueueSpec {
        queue: "audit".into(),
        routing_keys: vec!["order.created".into()],
        shards: 1,
    };
    shared::topology::declare(&ch, &names, &[spec])
        .await
        .expect("declare");

    let upstream = {
        let u = url::Url::parse(&direct).expect("AMQP_URL");
        format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(5672)
        )
    };
    let proxy = Proxy::start(upstream).await;
    let name = format!("stale-{}", uuid::Uuid::new_v4().simple());
    let publisher = AmqpPublisher::named(proxy.url(&direct), name.clone());
    let message =
        |id: &str| OutMessage::event(&names, &created(id, "a@example.com"), Encoding::Protobuf);

    publisher
        .publish(&[message("ord-1")])
        .await
        .expect("first invocation publishes");
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 1);

    // Idle and frozen: the broker drops the connection, the client does not hear of it.
    proxy.freeze();
    close_connection(&format!("orderflow-{name}")).await;

    publisher
        .publish(&[message("ord-2")])
        .await
        .expect("second invocation publishes after reconnecting");
    assert_eq!(
        proxy.accepted.load(Ordering::SeqCst),
        2,
        "the second publish went over a new connection"
    );

    let q = ch
        .queue_declare(
            names.queue("audit").as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    assert_eq!(q.message_count(), 2, "both invocations' events are queued");

    for q in [names.queue("audit"), names.dead_letter_queue("audit")] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for ex in [names.events_exchange(), names.dead_letter_exchange()] {
        let _ = ch
            .exchange_delete(ex.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
}
