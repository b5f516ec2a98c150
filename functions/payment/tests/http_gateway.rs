//! `HttpGateway` against a stand-in provider in this test: a small HTTP/1.1 server that
//! answers like a PaymentIntents API (approve, decline with a code, 500 on demand), checks
//! the API key and the `Idempotency-Key` of every call, and answers a repeated key with its
//! first answer, as providers do.

use payment::gateway::{AuthorizeError, AuthorizeRequest, PaymentGateway as _, SettleRequest};
use payment::http_gateway::HttpGateway;
use serde_json::{Value, json};
use shared::contracts::*;
use shared::testing::TestEnv;
use shared::{Encoding, Envelope};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const API_KEY: &str = "sk_test_standin";

/// One request as the stand-in saw it.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    path: String,
    key: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    form: Vec<(String, String)>,
}

impl Call {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A saved answer: the form it was given for, its status and body.
type Saved = (Vec<(String, String)>, u16, Value);

#[derive(Default)]
struct Provider {
    calls: Mutex<Vec<Call>>,
    /// First answer per idempotency key, with the form it came with.
    answers: Mutex<HashMap<String, Saved>>,
    /// The next this many requests fail with a 500 before anything is done (not saved).
    fail_next: AtomicU32,
    intents: AtomicU32,
    refunds: AtomicU32,
}

impl Provider {
    fn answer(&self, call: &Call) -> (u16, Value) {
        if call.authorization.as_deref() != Some(&format!("Bearer {API_KEY}")) {
            return (
                401,
                json!({"error": {"type": "invalid_request_error", "code": "api_key_invalid"}}),
            );
        }
        let Some(key) = call.key.clone() else {
            return (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "idempotency_key_missing"}}),
            );
        };
        if let Some((form, status, body)) = self.answers.lock().expect("lock").get(&key) {
            if *form != call.form {
                return (
                    400,
                    json!({"error": {"type": "idempotency_error", "code": "idempotency_key_reused"}}),
                );
            }
            return (*status, body.clone());
        }
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return (500, json!({"error": {"type": "api_error"}}));
        }
        let (status, body) = self.decide(call);
        self.answers
            .lock()
            .expect("lock")
            .insert(key, (call.form.clone(), status, body.clone()));
        (status, body)
    }

    fn decide(&self, call: &Call) -> (u16, Value) {
        let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            ["v1", "payment_intents"] => match call.field("payment_method") {
                Some("tok_visa") => {
                    let n = self.intents.fetch_add(1, Ordering::SeqCst) + 1;
                    (
                        200,
                        json!({"id": format!("pi_{n}"), "object": "payment_intent",
                               "status": "requires_capture", "capture_method": "manual",
                               "latest_charge": {"payment_method_details": {"card": {"last4": "4242"}}}}),
                    )
                }
                Some("tok_chargeDeclined") => (
                    402,
                    json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline"}}),
                ),
                Some("tok_chargeDeclinedInsufficientFunds") => (
                    402,
                    json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}}),
                ),
                _ => (
                    400,
                    json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}}),
                ),
            },
            ["v1", "payment_intents", id, "capture"] => {
                (200, json!({"id": id, "status": "succeeded"}))
            }
            ["v1", "payment_intents", id, "cancel"] => {
                (200, json!({"id": id, "status": "canceled"}))
            }
            // Every intent of the stand-in captured 3998: a refund above it is refused, as
            // the providers do; an amount of 13 is accepted and then fails at the network.
            ["v1", "refunds"] => {
                let amount: i64 = call
                    .field("amount")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0);
                if amount > 3998 {
                    return (
                        400,
                        json!({"error": {"type": "invalid_request_error", "code": "amount_too_large"}}),
                    );
                }
                let n = self.refunds.fetch_add(1, Ordering::SeqCst) + 1;
                let status = if amount == 13 { "failed" } else { "succeeded" };
                (
                    200,
                    json!({"id": format!("re_{n}"), "object": "refund", "status": status,
                           "failure_reason": if amount == 13 { "expired_or_canceled_card" } else { "" }}),
                )
            }
            _ => (
                404,
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}}),
            ),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
}

/// Starts the stand-in; returns its base URL.
async fn stand_in() -> (String, Arc<Provider>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let provider = Arc::new(Provider::default());
    let p = provider.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let p = p.clone();
            tokio::spawn(async move {
                // Keep-alive: answer every request on the connection.
                while let Some(call) = read_call(&mut sock).await {
                    p.calls.lock().expect("lock").push(call.clone());
                    let (status, body) = p.answer(&call);
                    let body = body.to_string();
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (base, provider)
}

async fn read_call(sock: &mut tokio::net::TcpStream) -> Option<Call> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let len: usize = get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let form = url::form_urlencoded::parse(&buf[head_end..head_end + len])
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Some(Call {
        path,
        key: get("idempotency-key"),
        authorization: get("authorization"),
        content_type: get("content-type"),
        form,
    })
}

fn authorize<'a>(key: &'a str, token: &'a str) -> AuthorizeRequest<'a> {
    AuthorizeRequest {
        idempotency_key: key,
        order_id: "o-1",
        token,
        amount_cents: 3998,
        currency: "EUR",
    }
}

#[tokio::test]
async fn an_approval_is_a_manual_capture_intent_created_under_the_calls_idempotency_key() {
    let (base, provider) = stand_in().await;
    let gateway = HttpGateway::new(&base, API_KEY).expect("gateway");
    let auth = gateway
        .authorize(authorize("authorize:ev-1", "tok_visa"))
        .await
        .expect("approved");
    assert_eq!(
        (auth.provider_ref.as_str(), auth.last4.as_str()),
        ("pi_1", "4242")
    );
    let calls = provider.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.path, "/v1/payment_intents");
    assert_eq!(call.key.as_deref(), Some("authorize:ev-1"));
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    for (field, value) in [
        ("amount", "3998"),
        ("currency", "eur"),
        ("payment_method", "tok_visa"),
        ("confirm", "true"),
        ("capture_method", "manual"),
        ("metadata[order_id]", "o-1"),
    ] {
        assert_eq!(call.field(field), Some(value), "{field}");
    }
}

#[tokio::test]
async fn a_declined_card_is_a_decline_with_the_providers_code() {
    let (base, _provider) = stand_in().await;
    let gateway = HttpGateway::new(&base, API_KEY).expect("gateway");
    for (token, code) in [
        ("tok_chargeDeclined", "generic_decline"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("tok_unknown", "resource_missing"),
    ] {
        match gateway
            .authorize(authorize(&format!("authorize:{token}"), token))
            .await
        {
            Err(AuthorizeError::Declined(d)) => assert_eq!(d.code, code, "{token}"),
            other => panic!("{token}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_key_and_body_and_the_retry_succeeds() {
    let (base, provider) = stand_in().await;
    provider.fail_next.store(1, Ordering::SeqCst);
    let gateway = HttpGateway::new(&base, API_KEY).expect("gateway");
    let auth = gateway
        .authorize(authorize("authorize:ev-500", "tok_visa"))
        .await
        .expect("approved on the retry");
    assert_eq!(auth.provider_ref, "pi_1");
    let calls = provider.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[0], calls[1],
        "the retry is the same request, key included"
    );

    // The same key later (a redelivered event) gets the first answer, no second intent.
    let again = gateway
        .authorize(authorize("authorize:ev-500", "tok_visa"))
        .await
        .expect("same answer");
    assert_eq!(again, auth);
    assert_eq!(provider.intents.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_an_outage_after_bounded_retries() {
    let (base, provider) = stand_in().await;
    provider.fail_next.store(u32::MAX, Ordering::SeqCst);
    let gateway = HttpGateway::new(&base, API_KEY).expect("gateway");
    let answer = gateway
        .authorize(authorize("authorize:ev-x", "tok_visa"))
        .await;
    assert!(
        matches!(answer, Err(AuthorizeError::Unavailable(_))),
        "{answer:?}"
    );
    assert_eq!(
        provider.calls().len(),
        payment::http_gateway::MAX_ATTEMPTS as usize
    );
}

#[tokio::test]
async fn a_wrong_api_key_is_an_outage_never_a_decline() {
    let (base, _provider) = stand_in().await;
    let gateway = HttpGateway::new(&base, "sk_test_wrong").expect("gateway");
    let answer = gateway
        .authorize(authorize("authorize:ev-k", "tok_visa"))
        .await;
    match answer {
        Err(AuthorizeError::Unavailable(e)) => {
            assert!(!format!("{e:#}").contains("sk_test_wrong"), "{e:#}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn capture_void_and_refund_name_the_intent_and_carry_their_own_keys() {
    let (base, provider) = stand_in().await;
    let gateway = HttpGateway::new(&format!("{base}/"), API_KEY).expect("gateway");
    let settle = |key: &'static str| SettleRequest {
        idempotency_key: key,
        order_id: "o-1",
        payment_id: uuid::Uuid::now_v7(),
        provider_ref: "pi_42",
        amount_cents: 3998,
        currency: "EUR",
    };
    gateway
        .capture(settle("capture:ev-2"))
        .await
        .expect("capture");
    gateway.void(settle("void:ev-3")).await.expect("void");
    gateway.refund(settle("refund:ev-4")).await.expect("refund");
    let calls: Vec<(String, Option<String>)> = provider
        .calls()
        .into_iter()
        .map(|c| (c.path, c.key))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "/v1/payment_intents/pi_42/capture".into(),
                Some("capture:ev-2".into())
            ),
            (
                "/v1/payment_intents/pi_42/cancel".into(),
                Some("void:ev-3".into())
            ),
            ("/v1/refunds".into(), Some("refund:ev-4".into())),
        ]
    );
    let refund = &provider.calls()[2];
    assert_eq!(
        (refund.field("payment_intent"), refund.field("amount")),
        (Some("pi_42"), Some("3998"))
    );
    assert_eq!(provider.calls()[0].field("amount_to_capture"), Some("3998"));
}

#[tokio::test]
async fn a_refund_is_posted_with_its_idempotency_key_answers_the_providers_refund_id_once_and_a_refusal_is_a_decline()
 {
    use payment::gateway::RefundError;
    let (base, provider) = stand_in().await;
    let gateway = HttpGateway::new(&base, API_KEY).expect("gateway");
    let refund = |key: &'static str, amount_cents| SettleRequest {
        idempotency_key: key,
        order_id: "o-1",
        payment_id: uuid::Uuid::now_v7(),
        provider_ref: "pi_42",
        amount_cents,
        currency: "EUR",
    };
    let first = gateway
        .refund(refund("refund:r-1", 1000))
        .await
        .expect("refunded");
    let again = gateway
        .refund(refund("refund:r-1", 1000))
        .await
        .expect("the same refund");
    assert_eq!(first.gateway_refund_id, "re_1");
    assert_eq!(again, first, "a repeated key is the same refund");
    let calls = provider.calls();
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert_eq!(c.path, "/v1/refunds");
        assert_eq!(c.key.as_deref(), Some("refund:r-1"));
        assert_eq!(
            (c.field("payment_intent"), c.field("amount")),
            (Some("pi_42"), Some("1000"))
        );
    }
    match gateway.refund(refund("refund:r-2", 3999)).await {
        Err(RefundError::Declined(d)) => assert_eq!(d.code, "amount_too_large"),
        other => panic!("expected a decline, got {other:?}"),
    }
    match gateway.refund(refund("refund:r-3", 13)).await {
        Err(RefundError::Declined(d)) => assert_eq!(d.code, "expired_or_canceled_card"),
        other => panic!("expected a failed refund, got {other:?}"),
    }
    provider.fail_next.store(u32::MAX, Ordering::SeqCst);
    match gateway.refund(refund("refund:r-4", 10)).await {
        Err(RefundError::Unavailable(e)) => assert!(!e.to_string().contains(API_KEY), "{e}"),
        other => panic!("expected an outage, got {other:?}"),
    }
}

fn created(order_id: &str, token: &str) -> Envelope {
    Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: order_id.into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            items: vec![OrderLine {
                product_id: "sku-1".into(),
                quantity: 1,
                unit_price_cents: 1500,
            }],
            total_cents: 1500,
            currency: "EUR".into(),
            payment_token_sealed: shared::payment_token::TokenKeys::development()
                .seal(order_id, token),
            payment_ref: shared::payment_token::reference(token),
            ..Default::default()
        }),
        None,
    )
}

#[tokio::test]
async fn payment_functions_over_the_http_gateway_authorize_capture_and_keep_the_ledger() {
    let (base, provider) = stand_in().await;
    let env = TestEnv::with_config(|c| {
        c.payment_gateway = Some("http".into());
        c.payment_gateway_url = Some(base.clone());
        c.payment_gateway_api_key = Some(shared::config::Secret::new(API_KEY));
    })
    .await;
    env.migrate(payment::SCHEMA, &payment::MIGRATOR).await;
    let process = payment::functions::process(&env.ctx);
    let settle = payment::functions::settle(&env.ctx);
    assert_eq!(process.init_error(), None);

    let create = created("o-http", "tok_visa");
    let ev = env.rmq_event(
        "payment-process",
        std::slice::from_ref(&create),
        Encoding::Protobuf,
    );
    process
        .invoke(serde_json::to_value(&ev).expect("json"))
        .await
        .expect("processed");
    let confirm = Envelope::new(
        Payload::OrderConfirmed(OrderConfirmed {
            order_id: "o-http".into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            total_cents: 1500,
            currency: "EUR".into(),
        }),
        Some(&create),
    );
    let ev = env.rmq_event(
        "payment-settle",
        std::slice::from_ref(&confirm),
        Encoding::Protobuf,
    );
    settle
        .invoke(serde_json::to_value(&ev).expect("json"))
        .await
        .expect("settled");

    let (status, provider_ref, token_ref): (String, Option<String>, Option<String>) =
        sqlx::query_as(
            "SELECT status, provider_ref, token_ref FROM payments.payments WHERE order_id = 'o-http'",
        )
        .fetch_one(&env.ctx.pool)
        .await
        .expect("row");
    assert_eq!(
        (
            status.as_str(),
            provider_ref.as_deref(),
            token_ref.as_deref()
        ),
        ("captured", Some("pi_1"), Some("tok_...visa"))
    );
    let ledger: Vec<(String, String)> = sqlx::query_as(
        "SELECT idempotency_key, kind FROM payments.ledger WHERE order_id = 'o-http' ORDER BY recorded_at",
    )
    .fetch_all(&env.ctx.pool)
    .await
    .expect("ledger");
    let keys: Vec<Option<String>> = provider.calls().into_iter().map(|c| c.key).collect();
    assert_eq!(
        ledger,
        vec![
            (format!("authorize:{}", create.event_id), "authorize".into()),
            (format!("capture:{}", confirm.event_id), "capture".into()),
        ]
    );
    assert_eq!(
        keys,
        ledger
            .iter()
            .map(|(k, _)| Some(k.clone()))
            .collect::<Vec<_>>(),
        "the provider saw the ledger's keys"
    );
    let captured = env
        .published()
        .into_iter()
        .any(|e| matches!(e.payload, Some(Payload::PaymentCaptured(_))));
    assert!(captured);

    // The customer cancels the confirmed order: the capture is refunded at the provider
    // under the cancel's key, and the ledger keeps the provider's refund id.
    let cancel = Envelope::new(
        Payload::OrderCancelled(OrderCancelled {
            order_id: "o-http".into(),
            user_id: "u1".into(),
            customer_email: "a@example.com".into(),
            reason: CancelReason::CustomerCancelled as i32,
        }),
        Some(&confirm),
    );
    let ev = env.rmq_event(
        "payment-settle",
        std::slice::from_ref(&cancel),
        Encoding::Protobuf,
    );
    settle
        .invoke(serde_json::to_value(&ev).expect("json"))
        .await
        .expect("refunded");
    let last = provider.calls().pop().expect("a call");
    assert_eq!(
        (
            last.path.as_str(),
            last.key.clone(),
            last.field("payment_intent"),
            last.field("amount")
        ),
        (
            "/v1/refunds",
            Some(format!("refund:{}", cancel.event_id)),
            Some("pi_1"),
            Some("1500")
        )
    );
    let refund: (String, Option<String>) = sqlx::query_as(
        "SELECT idempotency_key, gateway_refund_id FROM payments.ledger
         WHERE order_id = 'o-http' AND kind = 'refund'",
    )
    .fetch_one(&env.ctx.pool)
    .await
    .expect("refund row");
    assert_eq!(
        refund,
        (format!("refund:{}", cancel.event_id), Some("re_1".into()))
    );
    let refunded: Vec<PaymentRefunded> = env
        .published()
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(Payload::PaymentRefunded(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(refunded.len(), 1);
    assert_eq!(
        (
            refunded[0].gateway_refund_id.as_str(),
            refunded[0].amount_cents
        ),
        ("re_1", 1500)
    );
}

#[tokio::test]
async fn a_simulated_gateway_in_a_production_stage_refuses_to_start() {
    let env = TestEnv::with_config(|c| {
        c.stage = "prod".into();
        c.payment_gateway = Some("simulated".into());
    })
    .await;
    for f in [
        payment::functions::process(&env.ctx),
        payment::functions::settle(&env.ctx),
        payment::functions::refund(&env.ctx),
    ] {
        let error = f.init_error().expect("refused");
        assert!(error.contains("PAYMENT_GATEWAY=simulated"), "{error}");
    }
}
