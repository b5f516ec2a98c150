//! Signed webhooks against a local receiver that checks every signature with its own
//! implementation of the Standard Webhooks check (not the channel's `sign`): retries keep
//! one `webhook-id`, a tampered body is refused, redirects are not followed, and a webhook
//! that would send personal data over plain http refuses to start.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use notification::channel::{Delivery, NotificationChannel as _, Outgoing};
use notification::webhook::WebhookChannel;
use shared::contracts::{OrderConfirmed, Payload};
use shared::testing::TestEnv;
use shared::{Encoding, Envelope};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// How far a receiver lets `webhook-timestamp` be from its clock (the spec suggests 5 min).
const TOLERANCE_SECS: i64 = 300;

/// The receiver's check, written from the specification: HMAC-SHA256 keyed with the
/// base64-decoded secret over `{id}.{timestamp}.{raw body}`, compared in constant time
/// against each `v1,` signature of the header, timestamp within the tolerance.
fn verify(secret: &str, headers: &[(String, String)], body: &[u8]) -> Result<(), String> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(format!("no {name} header"))
    };
    let (id, timestamp, signatures) = (
        get("webhook-id")?,
        get("webhook-timestamp")?,
        get("webhook-signature")?,
    );
    let ts: i64 = timestamp.parse().map_err(|_| "timestamp not a number")?;
    if (chrono::Utc::now().timestamp() - ts).abs() > TOLERANCE_SECS {
        return Err("timestamp outside the tolerance".into());
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .map_err(|_| "secret not base64")?;
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    for candidate in signatures.split(' ') {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            continue;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(&signed);
        if mac.verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err("no valid v1 signature".into())
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    verified: Result<(), String>,
}

struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// How the receiver treats requests.
#[derive(Clone, Default)]
struct Behaviour {
    /// Statuses answered in turn to requests whose signature checks out (the last forever).
    statuses: Vec<u16>,
    /// Alter one byte of the body before checking it, as a tampering hop in between would.
    tamper: bool,
    /// Answer every request with a 302 to this address.
    redirect_to: Option<String>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(
            behaviour
                .statuses
                .iter()
                .copied()
                .collect::<VecDeque<u16>>(),
        ));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (log, script, behaviour) = (log.clone(), script.clone(), behaviour.clone());
                tokio::spawn(async move {
                    let Some((headers, mut body)) = read_request(&mut sock).await else {
                        return;
                    };
                    if behaviour.tamper
                        && let Some(b) = body.iter_mut().find(|b| b.is_ascii_digit())
                    {
                        *b = if *b == b'9' { b'8' } else { *b + 1 };
                    }
                    let verified = verify(SECRET, &headers, &body);
                    let (status, location) = match (&behaviour.redirect_to, &verified) {
                        (Some(to), _) => (302, format!("location: {to}\r\n")),
                        (None, Err(_)) => (401, String::new()),
                        (None, Ok(())) => {
                            let mut s = script.lock().expect("lock");
                            let status = if s.len() > 1 {
                                s.pop_front()
                            } else {
                                s.front().copied()
                            };
                            (status.unwrap_or(200), String::new())
                        }
                    };
                    log.lock().expect("lock").push(Seen {
                        headers,
                        body,
                        verified,
                    });
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\n{location}content-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Receiver { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn read_request(
    sock: &mut tokio::net::TcpStream,
) -> Option<(Vec<(String, String)>, Vec<u8>)> {
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
    Some((headers, buf[head_end..head_end + len].to_vec()))
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn outgoing() -> Outgoing {
    Outgoing {
        notification_id: uuid::Uuid::now_v7(),
        order_id: "ord-1".into(),
        kind: "order_confirmed".into(),
        recipient: "ada@example.com".into(),
        subject: "Your order ord-1 is confirmed".into(),
        body: "Good news: your order ord-1 is confirmed and your payment of 39.98 EUR was taken."
            .into(),
    }
}

async fn webhook_env(url: &str, secret: Option<&str>) -> TestEnv {
    let (url, secret) = (url.to_string(), secret.map(shared::config::Secret::new));
    let env = TestEnv::with_config(|c| {
        c.webhook_url = Some(url);
        c.webhook_secret = secret;
    })
    .await;
    env.migrate(notification::SCHEMA, &notification::MIGRATOR)
        .await;
    env
}

#[test]
fn the_receivers_check_refuses_a_changed_body_a_changed_id_and_an_old_timestamp() {
    let secret = notification::webhook::WebhookSecret::parse(SECRET).expect("secret");
    let now = chrono::Utc::now().timestamp();
    let body = br#"{"order_id":"ord-1"}"#;
    let headers = |id: &str, ts: i64| {
        vec![
            ("webhook-id".to_string(), id.to_string()),
            ("webhook-timestamp".to_string(), ts.to_string()),
            (
                "webhook-signature".to_string(),
                notification::webhook::sign(&secret, "msg_1", ts, body),
            ),
        ]
    };
    assert_eq!(verify(SECRET, &headers("msg_1", now), body), Ok(()));
    assert!(verify(SECRET, &headers("msg_1", now), br#"{"order_id":"ord-2"}"#).is_err());
    assert!(verify(SECRET, &headers("msg_2", now), body).is_err());
    let old = now - 2 * TOLERANCE_SECS;
    assert!(verify(SECRET, &headers("msg_1", old), body).is_err());
}

#[tokio::test]
async fn a_notification_answered_500_500_then_200_is_delivered_on_the_third_attempt_under_one_webhook_id()
 {
    let receiver = Receiver::start(Behaviour {
        statuses: vec![500, 500, 200],
        ..Default::default()
    })
    .await;
    let env = webhook_env(&receiver.url, Some(SECRET)).await;
    let f = notification::functions::send(&env.ctx);
    assert_eq!(f.init_error(), None);
    let confirmed = Envelope::new(
        Payload::OrderConfirmed(OrderConfirmed {
            order_id: "ord-1".into(),
            user_id: "u-1".into(),
            customer_email: "ada@example.com".into(),
            total_cents: 3998,
            currency: "EUR".into(),
        }),
        None,
    );
    let event = env.rmq_event("notification-send", &[confirmed], Encoding::Protobuf);
    f.invoke(serde_json::to_value(&event).expect("json"))
        .await
        .expect("invocation");

    let (id, status, attempts): (uuid::Uuid, String, i32) =
        sqlx::query_as("SELECT notification_id, status, attempts FROM notifications.notifications")
            .fetch_one(&env.ctx.pool)
            .await
            .expect("one notification");
    assert_eq!((status.as_str(), attempts), ("delivered", 3));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3, "three attempts");
    for attempt in &seen {
        assert_eq!(attempt.verified, Ok(()), "every attempt is signed");
        assert_eq!(header(attempt, "webhook-id"), Some(id.to_string().as_str()));
        assert_eq!(header(attempt, "content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&attempt.body).expect("JSON");
        assert_eq!(body["notification_id"], id.to_string());
    }
}

#[tokio::test]
async fn a_receiver_that_gets_a_tampered_body_rejects_it_and_the_delivery_is_not_retried() {
    let receiver = Receiver::start(Behaviour {
        statuses: vec![200],
        tamper: true,
        ..Default::default()
    })
    .await;
    let channel = WebhookChannel::new(&receiver.url, SECRET).expect("channel");
    let delivery = channel.deliver(&outgoing()).await;
    assert!(
        matches!(&delivery, Delivery::Failed { attempts: 1, error } if error.contains("401")),
        "{delivery:?}"
    );
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].verified.is_err(), "the altered body did not verify");
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_fails_the_delivery() {
    let elsewhere = Receiver::start(Behaviour {
        statuses: vec![200],
        ..Default::default()
    })
    .await;
    let redirecting = Receiver::start(Behaviour {
        redirect_to: Some(elsewhere.url.clone()),
        ..Default::default()
    })
    .await;
    let channel = WebhookChannel::new(&redirecting.url, SECRET).expect("channel");
    let delivery = channel.deliver(&outgoing()).await;
    assert!(
        matches!(&delivery, Delivery::Failed { attempts: 1, error } if error.contains("302")),
        "{delivery:?}"
    );
    assert_eq!(redirecting.seen().len(), 1);
    assert!(
        elsewhere.seen().is_empty(),
        "the signed body went where the redirect pointed"
    );
}

#[tokio::test]
async fn a_webhook_over_plain_http_to_another_host_or_without_a_secret_refuses_to_start() {
    let env = webhook_env("http://hooks.example.com/orderflow", Some(SECRET)).await;
    let error = notification::functions::send(&env.ctx)
        .init_error()
        .expect("refused");
    assert!(error.contains("https"), "{error}");

    let env = webhook_env("https://hooks.example.com/orderflow", None).await;
    let error = notification::functions::send(&env.ctx)
        .init_error()
        .expect("refused");
    assert!(error.contains("NOTIFICATION_WEBHOOK_SECRET"), "{error}");

    let env = webhook_env("https://hooks.example.com/orderflow", Some(SECRET)).await;
    assert_eq!(notification::functions::send(&env.ctx).init_error(), None);
}
