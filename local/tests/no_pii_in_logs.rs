//! No personal data or secret in any log line. The whole stack runs with every log line
//! captured (JSON, span fields included, debug level for the services and the runner): a
//! customer registers, logs in and places a good and a declined order, notifications go
//! through the log channel, then through a webhook whose URL carries a password and whose
//! receiver is down, so deliveries fail and are logged. Every captured line is scanned for
//! the e-mail, the password, the session token, the payment tokens, the notification
//! texts, the URL's password and the webhook secret. The scanner is shown to catch a line
//! that does hold the e-mail.
//!
//! The capture is the process's global subscriber, so this file holds one stack test.

mod common;

use serde_json::json;
use shared::testing::{LogCapture, leaks};
use std::time::{Duration, Instant};

const URL_PASSWORD: &str = "s3cr3t-hunter2";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Pieces of every notification text (received, confirmed, cancelled).
const BODY_TEXTS: [&str; 3] = [
    "We are checking stock and payment",
    "Good news: your order",
    "We are sorry: your order",
];
/// Services and runner at debug, libraries at what a debug deploy would show.
const FILTER: &str = "debug,hyper=info,hyper_util=info,h2=info,rustls=info,tower=info";

#[test]
fn the_scanner_finds_a_line_that_holds_the_email_in_any_case_or_escaping() {
    let capture = LogCapture::default();
    tracing::subscriber::with_default(capture.subscriber("info"), || {
        tracing::info!(
            recipient = "Ada.Lovelace@Example.com",
            "notification delivered"
        );
        tracing::info!(note = "said \"tok_visa\"", "a quoted token");
        tracing::info!(order_id = "o-1", "nothing personal");
        tracing::warn!(
            url = "http://hooks:s3cr3t-hunter2@127.0.0.1:1/hook",
            "webhook failed"
        );
    });
    let lines = capture.lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let found = leaks(
        &lines,
        &[
            "ada.lovelace@example.com",
            "said \"tok_visa\"",
            URL_PASSWORD,
        ],
    );
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].1.contains("notification delivered"));
    assert!(found[2].1.contains("webhook failed"));
    assert!(leaks(&lines[2..3], &["ada.lovelace@example.com", URL_PASSWORD]).is_empty());
}

/// Waits until no notification is pending (delivered or failed).
async fn notifications_settled(app: &common::App, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (total, pending): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status = 'pending')
             FROM notifications.notifications",
        )
        .fetch_one(&app.stack.ctx.pool)
        .await
        .expect("notifications");
        if total >= expected && pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} of {total} notifications pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Register, log in, one good and one declined order, both followed to their end.
/// Returns the secrets the run handled.
async fn customer_flow(app: &common::App) -> Vec<String> {
    let local_part = format!("pii{}", uuid::Uuid::new_v4().simple());
    let email = format!("{local_part}@example.com");
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let creds = json!({"email": email, "password": password});
    let (s, body) = app.send("POST", "/users", None, Some(creds.clone())).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = app.send("POST", "/sessions", None, Some(creds)).await;
    assert_eq!(s, 201, "{body}");
    let session = body["token"].as_str().expect("token").to_string();
    let items = json!([{"product_id": "sku-pii", "quantity": 1}]);
    let good = app.order(&session, items.clone(), "tok_visa").await;
    let declined = app.order(&session, items, "tok_chargeDeclined").await;
    assert_eq!(
        app.final_state(&session, &good).await["status"],
        "CONFIRMED"
    );
    assert_eq!(
        app.final_state(&session, &declined).await["status"],
        "CANCELLED"
    );
    // order_received and a final note for each order.
    notifications_settled(app, 4).await;

    // The operator's timeline of the order shows the card by its reference only.
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let timeline = local::timeline::build(&app.stack.ctx, &specs, &good)
        .await
        .expect("timeline");
    let shown = format!(
        "{}{}",
        local::timeline::render(&timeline),
        serde_json::to_string(&timeline).expect("json")
    );
    assert!(shown.contains("tok_...visa"), "{shown}");
    assert!(!shown.contains("tok_visa"), "the timeline shows the token");

    vec![
        email,
        local_part,
        password,
        session,
        "tok_visa".into(),
        "tok_chargeDeclined".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_flow_logs_no_email_password_session_token_payment_token_message_or_url_password() {
    let capture = LogCapture::install(FILTER).expect("no other global subscriber in this binary");
    let mut secrets: Vec<String> = BODY_TEXTS.iter().map(|s| s.to_string()).collect();
    secrets.extend([URL_PASSWORD.to_string(), WEBHOOK_SECRET.to_string()]);

    // Notifications through the log channel.
    let app = common::start().await;
    app.seed(&[("sku-pii", 1000, 100)]).await;
    secrets.extend(customer_flow(&app).await);
    app.stop().await;
    let log_channel_lines = capture.lines().len();

    // Notifications through a webhook whose URL holds a password and whose receiver is
    // down (port 1 refuses): every delivery is retried, fails and is logged.
    let db = shared::testing::fresh_database().await;
    let mut cfg = common::config(&db, &shared::testing::random_prefix());
    cfg.webhook_url = Some(format!("http://hooks:{URL_PASSWORD}@127.0.0.1:1/hook"));
    cfg.webhook_secret = Some(shared::config::Secret::new(WEBHOOK_SECRET));
    let app = common::start_with(cfg).await;
    app.seed(&[("sku-pii", 1000, 100)]).await;
    secrets.extend(customer_flow(&app).await);
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications.notifications WHERE status = 'failed'",
    )
    .fetch_one(&app.stack.ctx.pool)
    .await
    .expect("count");
    assert_eq!(failed, 4, "every webhook delivery failed");
    app.stop().await;

    let lines = capture.lines();
    // The capture saw the flow, so a clean scan means something.
    for expected in [
        "user registered",
        "order accepted",
        "payment authorized",
        "notification delivered",
        "webhook delivery will be retried",
        "notification delivery failed",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(expected)),
            "no {expected:?} line among {} captured",
            lines.len()
        );
    }
    assert!(log_channel_lines > 0 && lines.len() > log_channel_lines);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let found = leaks(&lines, &secrets);
    assert!(
        found.is_empty(),
        "{} log line(s) give away personal data or secrets:\n{}",
        found.len(),
        found
            .iter()
            .take(10)
            .map(|(secret, line)| format!("{secret:?} in {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
