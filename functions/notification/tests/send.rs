//! `notification-send` against the real local Postgres, with the recording publisher and a
//! local webhook server.

use serde_json::Value;
use shared::contracts::{
    CancelReason, NotificationKind, OrderCancelled, OrderConfirmed, OrderCreated, OrderDelivered,
    OrderLine, OrderShipped, Payload, PaymentRefunded, StockReserved,
};
use shared::testing::TestEnv;
use shared::{Encoding, Envelope, Function};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const QUEUE: &str = "notification-send";

async fn env() -> TestEnv {
    let env = TestEnv::new().await;
    env.migrate(notification::SCHEMA, &notification::MIGRATOR)
        .await;
    env
}

fn created(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: order_id.into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
            items: vec![OrderLine {
                product_id: "sku-1".into(),
                quantity: 2,
                unit_price_cents: 1999,
            }],
            total_cents: 3998,
            currency: "EUR".into(),
            payment_token_sealed: shared::payment_token::TokenKeys::development()
                .seal(order_id, "tok_visa"),
            payment_ref: shared::payment_token::reference("tok_visa"),
            ..Default::default()
        }),
        None,
    )
}

fn confirmed(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderConfirmed(OrderConfirmed {
            order_id: order_id.into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
            total_cents: 3998,
            currency: "EUR".into(),
        }),
        None,
    )
}

fn cancelled(order_id: &str, reason: CancelReason) -> Envelope {
    Envelope::new(
        Payload::OrderCancelled(OrderCancelled {
            order_id: order_id.into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
            reason: reason as i32,
        }),
        None,
    )
}

async fn deliver(env: &TestEnv, f: &Arc<dyn Function>, events: &[Envelope]) -> Value {
    let ev = env.rmq_event(QUEUE, events, Encoding::Protobuf);
    f.invoke(serde_json::to_value(&ev).expect("event json"))
        .await
        .expect("batch succeeds")
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    notification_id: uuid::Uuid,
    order_id: String,
    kind: String,
    channel: String,
    recipient: String,
    body: String,
    status: String,
    attempts: i32,
    delivered_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn rows(env: &TestEnv) -> Vec<Row> {
    sqlx::query_as(
        "SELECT notification_id, order_id, kind, channel, recipient, body, status, attempts, delivered_at
         FROM notifications.notifications ORDER BY created_at, kind",
    )
    .fetch_all(&env.ctx.pool)
    .await
    .expect("rows")
}

fn sent(env: &TestEnv) -> Vec<shared::contracts::NotificationSent> {
    env.published()
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(Payload::NotificationSent(s)) => Some(s),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn each_order_event_creates_one_notification_and_publishes_one_notification_sent() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    let events = [
        created("ord-1"),
        confirmed("ord-1"),
        cancelled("ord-2", CancelReason::PaymentDeclined),
    ];
    let report = deliver(&env, &f, &events).await;
    assert_eq!(report["processed"], 3, "{report}");
    assert_eq!(report["published"], 3, "{report}");

    let rows = rows(&env).await;
    let kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.order_id.as_str(), r.kind.as_str()))
        .collect();
    assert_eq!(kinds.len(), 3);
    for want in [
        ("ord-1", "order_received"),
        ("ord-1", "order_confirmed"),
        ("ord-2", "order_cancelled"),
    ] {
        assert!(kinds.contains(&want), "{want:?} in {kinds:?}");
    }
    for r in &rows {
        assert_eq!(
            (r.channel.as_str(), r.status.as_str(), r.attempts),
            ("log", "delivered", 1),
            "{r:?}"
        );
        assert!(r.delivered_at.is_some());
        assert_eq!(r.recipient, "ada@example.com");
    }
    let cancel = rows
        .iter()
        .find(|r| r.kind == "order_cancelled")
        .expect("cancel row");
    assert!(
        cancel.body.contains("payment was declined"),
        "{}",
        cancel.body
    );
    let received = rows
        .iter()
        .find(|r| r.kind == "order_received")
        .expect("received row");
    assert!(received.body.contains("39.98 EUR"), "{}", received.body);

    let sent = sent(&env);
    assert_eq!(sent.len(), 3);
    for s in &sent {
        let row = rows
            .iter()
            .find(|r| r.notification_id.to_string() == s.notification_id)
            .expect("event names a row");
        assert_eq!(s.order_id, row.order_id);
        assert_eq!(
            NotificationKind::try_from(s.kind).expect("kind").api_name(),
            row.kind
        );
        assert_eq!(s.channel, "log");
    }
    let published = env.published();
    assert!(
        published
            .iter()
            .all(|e| e.event_type == "notification.sent")
    );
    let causes: Vec<&str> = published.iter().map(|e| e.causation_id.as_str()).collect();
    for e in &events {
        assert!(
            causes.contains(&e.event_id.as_str()),
            "caused by {}",
            e.event_id
        );
    }

    let counts = notification::notification_counts(&env.ctx.pool)
        .await
        .expect("counts");
    assert_eq!(counts.len(), 3);
    assert!(counts.iter().all(|(_, _, n)| *n == 1), "{counts:?}");
}

#[tokio::test]
async fn the_same_envelope_twice_makes_one_notification_and_one_event() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    let ev = confirmed("ord-1");
    deliver(&env, &f, std::slice::from_ref(&ev)).await;
    let report = deliver(&env, &f, &[ev.clone(), ev]).await;
    assert_eq!(report["duplicates"], 2, "{report}");
    assert_eq!(rows(&env).await.len(), 1);
    assert_eq!(sent(&env).len(), 1);
}

#[tokio::test]
async fn a_republished_event_with_a_new_id_makes_no_second_notification() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    deliver(&env, &f, &[confirmed("ord-1")]).await;
    let report = deliver(&env, &f, &[confirmed("ord-1"), confirmed("ord-1")]).await;
    assert_eq!(report["processed"], 2, "{report}");
    assert_eq!(report["published"], 0, "{report}");
    assert_eq!(rows(&env).await.len(), 1);
    assert_eq!(sent(&env).len(), 1);
    let counts = notification::notification_counts(&env.ctx.pool)
        .await
        .expect("counts");
    assert_eq!(
        counts,
        vec![("ord-1".to_string(), "order_confirmed".to_string(), 1)]
    );
}

#[tokio::test]
async fn an_event_type_not_bound_to_the_queue_is_parked_with_its_reason() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    let ev = Envelope::new(
        Payload::StockReserved(StockReserved {
            order_id: "ord-1".into(),
            items: vec![],
        }),
        None,
    );
    let report = deliver(&env, &f, &[ev]).await;
    assert_eq!(
        report["parked"][0]["reason"], "unexpected event type stock.reserved",
        "{report}"
    );
    let parked = env.parked();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        parked[0].header(shared::topology::parked::REASON),
        Some(&shared::publisher::HeaderVal::Str(
            "unexpected event type stock.reserved".into()
        ))
    );
    assert!(rows(&env).await.is_empty());
    assert!(env.published().is_empty());
}

#[tokio::test]
async fn an_order_event_without_a_recipient_is_parked() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    let mut ev = confirmed("ord-1");
    if let Some(Payload::OrderConfirmed(c)) = ev.payload.as_mut() {
        c.customer_email.clear();
    }
    let report = deliver(&env, &f, &[ev]).await;
    assert_eq!(
        report["parked"][0]["reason"], "order.confirmed has no customer_email to notify",
        "{report}"
    );
    assert_eq!(env.parked().len(), 1);
}

#[tokio::test]
async fn one_chunk_notifies_as_its_messages_would_one_by_one() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    // An earlier chunk already notified ord-2's receipt.
    deliver(&env, &f, &[created("ord-2")]).await;
    let chunk = [
        created("ord-1"),
        confirmed("ord-1"),
        // A re-publish with a new id, in the same chunk: no second notification.
        confirmed("ord-1"),
        // Already notified by the earlier chunk.
        created("ord-2"),
        cancelled("ord-3", CancelReason::OutOfStock),
    ];
    let report = deliver(&env, &f, &chunk).await;
    assert_eq!(report["processed"], 5, "{report}");
    assert_eq!(report["published"], 3, "{report}");
    assert!(
        report["parked"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );

    let rows = rows(&env).await;
    let mut kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.order_id.as_str(), r.kind.as_str()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("ord-1", "order_confirmed"),
            ("ord-1", "order_received"),
            ("ord-2", "order_received"),
            ("ord-3", "order_cancelled"),
        ]
    );
    assert!(rows.iter().all(|r| r.status == "delivered"), "{rows:?}");
    // One notification.sent per new notification, each naming its row and caused by the
    // first event that asked for it.
    let published = env.published();
    let sent_now: Vec<&Envelope> = published
        .iter()
        .filter(|e| chunk.iter().any(|c| c.event_id == e.causation_id))
        .collect();
    let causes: Vec<&str> = sent_now.iter().map(|e| e.causation_id.as_str()).collect();
    assert_eq!(
        causes,
        vec![
            chunk[0].event_id.as_str(),
            chunk[1].event_id.as_str(),
            chunk[4].event_id.as_str()
        ]
    );
    for e in sent_now {
        let Some(Payload::NotificationSent(s)) = &e.payload else {
            panic!("not a notification.sent: {e:?}");
        };
        assert!(
            rows.iter()
                .any(|r| r.notification_id.to_string() == s.notification_id
                    && r.order_id == s.order_id),
            "{s:?} names a row"
        );
    }
}

#[tokio::test]
async fn an_invalid_event_in_a_chunk_is_parked_alone_and_the_rest_notified() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    let stray = Envelope::new(
        Payload::StockReserved(StockReserved {
            order_id: "ord-9".into(),
            items: vec![],
        }),
        None,
    );
    let report = deliver(&env, &f, &[created("ord-1"), stray, confirmed("ord-2")]).await;
    assert_eq!(report["processed"], 2, "{report}");
    assert_eq!(
        report["parked"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(
        report["parked"][0]["reason"], "unexpected event type stock.reserved",
        "{report}"
    );
    assert_eq!(rows(&env).await.len(), 2);
    assert_eq!(sent(&env).len(), 2);
}

#[tokio::test]
async fn the_set_based_path_meets_injected_faults_as_the_per_message_path_does() {
    // error@notification-send=1: every chunk fails as a transient error would, and nothing
    // of it is committed; the redelivery without the fault applies it once.
    let faulty = shared::testing::TestEnv::with_config(|c| {
        c.faults = shared::faults::Faults::parse("error@notification-send=1").expect("faults");
    })
    .await;
    faulty
        .migrate(notification::SCHEMA, &notification::MIGRATOR)
        .await;
    let f = notification::functions::send(&faulty.ctx);
    let events = [created("ord-1"), confirmed("ord-1")];
    let ev = faulty.rmq_event(QUEUE, &events, Encoding::Protobuf);
    let failed = f.invoke(serde_json::to_value(&ev).expect("json")).await;
    assert!(
        failed.is_err(),
        "the injected error fails the batch: {failed:?}"
    );
    assert!(rows(&faulty).await.is_empty(), "nothing committed");
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications.inbox")
        .fetch_one(&faulty.ctx.pool)
        .await
        .expect("inbox");
    assert_eq!(inbox, 0, "the inbox forgets the failed chunk");
    assert!(sent(&faulty).is_empty());
}

/// One request as the test webhook saw it.
#[derive(Debug, Clone)]
struct Seen {
    headers: Vec<(String, String)>,
    body: Value,
}

/// A tiny HTTP/1.1 server answering with the scripted statuses in turn (the last one
/// forever after), one request per connection.
async fn webhook(statuses: &[u16]) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/hooks/notifications",
        listener.local_addr().expect("addr")
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(
        statuses.iter().copied().collect::<VecDeque<u16>>(),
    ));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (log, script) = (log.clone(), script.clone());
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else {
                    return;
                };
                let status = {
                    let mut s = script.lock().expect("lock");
                    if s.len() > 1 {
                        s.pop_front()
                    } else {
                        s.front().copied()
                    }
                    .unwrap_or(200)
                };
                log.lock().expect("lock").push(req);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, seen)
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    Some(Seen { headers, body })
}

async fn webhook_env(url: &str) -> TestEnv {
    let url = url.to_string();
    let env = TestEnv::with_config(|c| {
        c.webhook_url = Some(url);
        c.webhook_secret = Some(shared::config::Secret::new(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ));
    })
    .await;
    env.migrate(notification::SCHEMA, &notification::MIGRATOR)
        .await;
    env
}

#[tokio::test]
async fn the_webhook_is_retried_after_a_500_and_then_recorded_delivered() {
    let (url, seen) = webhook(&[500, 200]).await;
    let env = webhook_env(&url).await;
    let f = notification::functions::send(&env.ctx);
    deliver(&env, &f, &[confirmed("ord-1")]).await;

    let rows = rows(&env).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.channel.as_str(), row.status.as_str(), row.attempts),
        ("webhook", "delivered", 2),
        "{row:?}"
    );
    assert!(row.delivered_at.is_some());

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    for req in &seen {
        let key = req
            .headers
            .iter()
            .find(|(k, _)| k == "idempotency-key")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            key,
            Some(row.notification_id.to_string().as_str()),
            "{:?}",
            req.headers
        );
        assert_eq!(req.body["notification_id"], row.notification_id.to_string());
        assert_eq!(req.body["order_id"], "ord-1");
        assert_eq!(req.body["kind"], "order_confirmed");
        assert_eq!(req.body["recipient"], "ada@example.com");
        assert!(
            req.body["subject"]
                .as_str()
                .is_some_and(|s| s.contains("confirmed"))
        );
        assert!(
            req.body["body"]
                .as_str()
                .is_some_and(|s| s.contains("39.98 EUR"))
        );
    }
    assert_eq!(sent(&env)[0].channel, "webhook");
}

#[tokio::test]
async fn a_webhook_that_answers_400_is_not_retried_and_the_notification_is_failed() {
    let (url, seen) = webhook(&[400]).await;
    let env = webhook_env(&url).await;
    let f = notification::functions::send(&env.ctx);
    let report = deliver(&env, &f, &[cancelled("ord-1", CancelReason::OutOfStock)]).await;
    assert_eq!(report["processed"], 1, "the batch does not fail: {report}");

    let rows = rows(&env).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("failed", 1),
        "{:?}",
        rows[0]
    );
    assert!(rows[0].delivered_at.is_none());
    assert_eq!(seen.lock().expect("lock").len(), 1);
    assert_eq!(
        sent(&env).len(),
        1,
        "the notification was recorded and announced"
    );
}

#[tokio::test]
async fn an_unreachable_webhook_is_tried_four_times_then_failed() {
    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let env = webhook_env(&format!("http://127.0.0.1:{port}/hook")).await;
    let f = notification::functions::send(&env.ctx);
    deliver(&env, &f, &[created("ord-1")]).await;
    let rows = rows(&env).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("failed", 4),
        "{:?}",
        rows[0]
    );
}

fn shipped(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderShipped(OrderShipped {
            order_id: order_id.into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
            carrier: "DHL".into(),
            tracking_number: "JD0001".into(),
            items: vec![],
        }),
        None,
    )
}

fn delivered(order_id: &str) -> Envelope {
    Envelope::new(
        Payload::OrderDelivered(OrderDelivered {
            order_id: order_id.into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
        }),
        None,
    )
}

fn refunded(order_id: &str, refund_id: &str, amount: i64) -> Envelope {
    Envelope::new(
        Payload::PaymentRefunded(PaymentRefunded {
            order_id: order_id.into(),
            refund_id: refund_id.into(),
            payment_id: "p-1".into(),
            amount_cents: amount,
            currency: "EUR".into(),
            gateway_refund_id: format!("re_{refund_id}"),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
        }),
        None,
    )
}

/// `(order_id, kind, count)` of every notification.
async fn counts(env: &TestEnv) -> Vec<(String, String, i64)> {
    notification::notification_counts(&env.ctx.pool)
        .await
        .expect("counts")
}

fn owned(rows: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    rows.iter()
        .map(|(o, k, n)| (o.to_string(), k.to_string(), *n))
        .collect()
}

#[tokio::test]
async fn shipped_delivered_and_refunded_notify_once_each_under_redelivery_and_once_per_refund() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    let (ship, deliver_ev, refund) = (
        shipped("ord-1"),
        delivered("ord-1"),
        refunded("ord-1", "r-1", 1200),
    );
    let report = deliver(
        &env,
        &f,
        &[ship.clone(), deliver_ev.clone(), refund.clone()],
    )
    .await;
    assert_eq!(report["published"], 3, "{report}");
    // The same envelopes again (the inbox), the same events re-published under new ids (the
    // unique key), in one chunk with a second refund of the order, which is notified.
    let report = deliver(
        &env,
        &f,
        &[
            ship,
            deliver_ev,
            refund,
            shipped("ord-1"),
            delivered("ord-1"),
            refunded("ord-1", "r-1", 1200),
            refunded("ord-1", "r-2", 300),
        ],
    )
    .await;
    assert_eq!(report["duplicates"], 3, "{report}");
    assert_eq!(report["published"], 1, "{report}");
    assert_eq!(
        counts(&env).await,
        owned(&[
            ("ord-1", "order_delivered", 1),
            ("ord-1", "order_refunded", 2),
            ("ord-1", "order_shipped", 1),
        ])
    );
    let kinds: Vec<i32> = sent(&env).iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::OrderShipped as i32,
            NotificationKind::OrderDelivered as i32,
            NotificationKind::OrderRefunded as i32,
            NotificationKind::OrderRefunded as i32,
        ]
    );
    let rows = rows(&env).await;
    assert!(rows.iter().all(|r| r.status == "delivered"), "{rows:?}");
    let bodies: Vec<&str> = rows.iter().map(|r| r.body.as_str()).collect();
    assert!(bodies.iter().any(|b| b.contains("DHL")), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.contains("12.00 EUR")), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.contains("3.00 EUR")), "{bodies:?}");
}

#[tokio::test]
async fn refunds_take_the_per_message_path_too_when_a_chunk_holds_an_invalid_event() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    let no_refund_id = refunded("ord-1", "", 100);
    let report = deliver(
        &env,
        &f,
        &[
            refunded("ord-1", "r-1", 100),
            no_refund_id,
            refunded("ord-1", "r-1", 100),
            refunded("ord-1", "r-2", 100),
            shipped("ord-1"),
        ],
    )
    .await;
    assert_eq!(
        report["parked"][0]["reason"], "payment.refunded has no refund_id",
        "{report}"
    );
    assert_eq!(report["published"], 3, "{report}");
    assert_eq!(
        counts(&env).await,
        owned(&[
            ("ord-1", "order_refunded", 2),
            ("ord-1", "order_shipped", 1)
        ])
    );
}

#[tokio::test]
async fn a_status_update_whose_connection_died_is_retried_not_left_pending() {
    let env = env().await;
    let f = notification::functions::send(&env.ctx);
    deliver(&env, &f, &[created("ord-pg")]).await;
    let id = rows(&env).await[0].notification_id;
    sqlx::query("UPDATE notifications.notifications SET status = 'pending', attempts = 0")
        .execute(&env.ctx.pool)
        .await
        .expect("reset");
    // A pool of one connection, whose backend Postgres then terminates (as a restart, a
    // failover or the chaos suite's fault does): its next statement fails on the dead socket.
    // No ping on acquire, which would hide the death here; in production the backend can as
    // well die between the ping and the statement.
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&env.database_url)
        .await
        .expect("pool");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&one)
        .await
        .expect("pid");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&env.ctx.pool)
        .await
        .expect("terminate");
    assert!(terminated);
    notification::pg::mark_delivered(&one, &[(id, 1)])
        .await
        .expect("retried on a new connection");
    let row = &rows(&env).await[0];
    assert_eq!((row.status.as_str(), row.attempts), ("delivered", 1));
}
