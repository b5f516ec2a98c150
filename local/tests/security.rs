//! Hardening, through the real front door on a whole stack: rate limits answer 429 with
//! `Retry-After` on every limited route (the client address coming from the TCP peer, as
//! API Gateway's `sourceIp` does), `ORDERFLOW_RATE_LIMITS=off` turns them off, bad input of
//! every kind is a 400 and never a 5xx, logging out everywhere is routed, and slow or
//! oversized clients are cut off (slowloris headers, a dribbled body, a huge body).

mod common;

use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error shape expected, got {body}"))
}

async fn stack_with(vars: &[(&str, &str)]) -> common::App {
    let db = shared::testing::fresh_database().await;
    common::start_with(common::config_with(
        &db,
        &shared::testing::random_prefix(),
        vars,
    ))
    .await
}

/// Status, `Retry-After` (if any) and JSON body of a request sent with reqwest.
async fn send(req: reqwest::RequestBuilder) -> (u16, Option<u64>, Value) {
    let resp = req.send().await.expect("HTTP");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.parse().expect("Retry-After is whole seconds"));
    let text = resp.text().await.expect("body");
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn creds(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limited_route_answers_429_with_retry_after_once_over_its_limit() {
    let app = stack_with(&[
        ("ORDERFLOW_RATE_LIMIT_SIGNUP_PER_ADDRESS", "4/1h"),
        ("ORDERFLOW_RATE_LIMIT_LOGIN_PER_EMAIL", "3/15m"),
        ("ORDERFLOW_RATE_LIMIT_LOGIN_PER_ADDRESS", "6/15m"),
        ("ORDERFLOW_RATE_LIMIT_ORDERS_PER_USER", "3/1m"),
    ])
    .await;
    app.seed(&[("sku-a", 100, 1000)]).await;
    let post = |path: &str, body: Value| app.http.post(format!("{}{path}", app.base)).json(&body);

    // Sign-up per address: 4 an hour from 127.0.0.1.
    let emails: Vec<String> = (0..4).map(|i| format!("u{i}@example.com")).collect();
    for e in &emails {
        let (s, _, b) = send(post("/users", creds(e, "correct horse"))).await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, retry, b) = send(post("/users", creds("u4@example.com", "correct horse"))).await;
    assert_eq!((s, code(&b)), (429, "rate_limited"), "{b}");
    assert!(retry.is_some_and(|r| (850..=900).contains(&r)), "{retry:?}");

    // Orders per user: 3 a minute.
    let login = |e: &str| send(post("/sessions", creds(e, "correct horse")));
    let (_, _, b) = login(&emails[0]).await;
    let ada = b["token"].as_str().expect("token").to_string();
    let (_, _, b) = login(&emails[1]).await;
    let bob = b["token"].as_str().expect("token").to_string();
    let order = |token: &str| {
        app.http
            .post(format!("{}/orders", app.base))
            .bearer_auth(token)
            .json(&json!({"items": [{"product_id": "sku-a", "quantity": 1}], "payment_token": "tok_visa"}))
    };
    for _ in 0..3 {
        let (s, _, b) = send(order(&ada)).await;
        assert_eq!(s, 202, "{b}");
    }
    let (s, retry, b) = send(order(&ada)).await;
    assert_eq!((s, code(&b)), (429, "rate_limited"), "{b}");
    assert!(retry.is_some_and(|r| (1..=20).contains(&r)), "{retry:?}");
    let (s, _, b) = send(order(&bob)).await;
    assert_eq!(s, 202, "another user is not limited: {b}");

    // Login per e-mail: 3 failures, then even the right password waits.
    for _ in 0..3 {
        let (s, _, _) = send(post("/sessions", creds(&emails[2], "wrong horse"))).await;
        assert_eq!(s, 401);
    }
    let (s, retry, b) = login(&emails[2]).await;
    assert_eq!((s, code(&b)), (429, "rate_limited"), "{b}");
    assert!(retry.is_some_and(|r| (1..=300).contains(&r)), "{retry:?}");

    // Login per address: 6 failures from 127.0.0.1 (3 above, 3 on other accounts), then
    // a fourth account's right password is refused too.
    for i in 0..3 {
        let (s, _, _) = send(post(
            "/sessions",
            creds(&format!("nobody{i}@example.com"), "x"),
        ))
        .await;
        assert_eq!(s, 401);
    }
    let (s, retry, b) = login(&emails[3]).await;
    assert_eq!((s, code(&b)), (429, "rate_limited"), "{b}");
    assert!(retry.is_some(), "Retry-After");

    app.verify().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_off_lets_everything_through() {
    let app = stack_with(&[
        ("ORDERFLOW_RATE_LIMITS", "off"),
        ("ORDERFLOW_RATE_LIMIT_SIGNUP_PER_ADDRESS", "1/1h"),
        ("ORDERFLOW_RATE_LIMIT_LOGIN_PER_EMAIL", "1/1h"),
        ("ORDERFLOW_RATE_LIMIT_LOGIN_PER_ADDRESS", "1/1h"),
        ("ORDERFLOW_RATE_LIMIT_ORDERS_PER_USER", "1/1h"),
    ])
    .await;
    app.seed(&[("sku-a", 100, 1000)]).await;
    let token = app.user().await;
    let _second = app.user().await;
    for _ in 0..3 {
        let (s, _) = app
            .send(
                "POST",
                "/sessions",
                None,
                Some(creds("nobody@example.com", "x")),
            )
            .await;
        assert_eq!(s, 401);
        app.order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 1}]),
            "tok_visa",
        )
        .await;
    }
    app.verify().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_of_every_kind_is_a_400_and_never_a_5xx() {
    let app = common::start().await;
    app.seed(&[("sku-a", 100, 1000)]).await;
    let token = app.user().await;
    let order_body = |id: &str, payment: &str| json!({"items": [{"product_id": id, "quantity": 1}], "payment_token": payment});

    // Idempotency-Key: 1 to 255 visible ASCII characters, or 400 (and nothing is created).
    let too_long = "k".repeat(256);
    let keys: [&[u8]; 5] = [b"cl\xc3\xa9", b"a b", b"\xff", b"", too_long.as_bytes()];
    for key in keys {
        let req = app
            .http
            .post(format!("{}/orders", app.base))
            .bearer_auth(&token)
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(key).expect("a sendable header"),
            )
            .json(&order_body("sku-a", "tok_visa"));
        let (s, _, b) = send(req).await;
        assert_eq!((s, code(&b)), (400, "invalid_request"), "key {key:?}: {b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Idempotency-Key"))
        );
    }
    let (s, _, b) = send(
        app.http
            .post(format!("{}/orders", app.base))
            .bearer_auth(&token)
            .header("idempotency-key", "order-7f1c")
            .json(&order_body("sku-a", "tok_visa")),
    )
    .await;
    assert_eq!(s, 202, "a good key: {b}");

    // Control characters in any string of any body; product ids outside the charset.
    let cases = [
        ("/users", creds("ada\u{0}@example.com", "correct horse")),
        ("/users", creds("ada@example.com", "correct\u{0}horse")),
        ("/sessions", creds("ada\u{0}@example.com", "correct horse")),
        ("/sessions", creds("ada@example.com", "tab\there")),
        ("/orders", order_body("sku-a\u{0}", "tok_visa")),
        ("/orders", order_body("sku-a", "tok_visa\n")),
        ("/orders", order_body("sku a", "tok_visa")),
        ("/orders", order_body("sku/../a", "tok_visa")),
        ("/orders", order_body(&"x".repeat(65), "tok_visa")),
        (
            "/orders",
            json!({"items": [{"product_id": "sku-a", "quantity": 1, "note": "\u{7}"}], "payment_token": "tok_visa"}),
        ),
    ];
    for (path, body) in cases {
        let (s, b) = app
            .send("POST", path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(
            (s, code(&b)),
            (400, "invalid_request"),
            "{path} {body}: {b}"
        );
    }
    for path in [
        "/stock?ids=sku-a,sku%00b",
        "/stock?ids=sku%20a",
        "/products/sku%00a/stock",
        "/products/sku%20a/stock",
        &format!("/products/{}/stock", "p".repeat(65)),
    ] {
        let (s, b) = app.send("GET", path, None, None).await;
        assert_eq!((s, code(&b)), (400, "invalid_request"), "{path}: {b}");
    }

    // Odd input anywhere is never answered with a 5xx.
    let odd_bodies = [
        "\u{0}",
        "{\"email\": \"\\ud800@x.io\", \"password\": \"correct horse\"}",
        "{\"email\": null, \"password\": null}",
        "{\"items\": [{\"product_id\": \"sku-a\", \"quantity\": 1e400}], \"payment_token\": \"tok_visa\"}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "{\"email\": \"ada@example.com\", \"password\": \"correct horse\", \"email\": \"x\"}",
    ];
    for path in ["/users", "/sessions", "/orders"] {
        for body in odd_bodies {
            let (s, b) = app.raw("POST", path, Some(&token), body).await;
            assert!((400..500).contains(&s), "{path} {body:?}: {s} {b}");
        }
    }
    for path in [
        "/orders/%00",
        "/orders/00000000-0000-0000-0000-000000000000%00",
        "/stock?ids=%ff%fe",
    ] {
        let (s, b) = app.send("GET", path, Some(&token), None).await;
        assert!((400..500).contains(&s), "{path}: {s} {b}");
    }

    // Logging out everywhere is routed by the front door.
    let (s, b) = app.send("POST", "/sessions", None, None).await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = app.send("DELETE", "/sessions", Some(&token), None).await;
    assert_eq!(s, 204);
    let (s, b) = app
        .send(
            "GET",
            "/orders/00000000-0000-0000-0000-000000000000",
            Some(&token),
            None,
        )
        .await;
    assert_eq!((s, code(&b)), (401, "unauthorized"), "{b}");

    app.verify().await;
    app.stop().await;
}

/// Reads until the server closes the connection or `limit` passes; what it sent.
fn read_until_closed(stream: &mut std::net::TcpStream, limit: Duration) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_clients_are_cut_off() {
    let db = shared::testing::fresh_database().await;
    let cfg = common::config(&db, &shared::testing::random_prefix());
    let app = common::start_with_limits(
        cfg,
        local::front::Limits {
            header_read_timeout: Duration::from_millis(500),
            body_read_timeout: Duration::from_millis(500),
            max_body_bytes: 1024,
        },
    )
    .await;
    let addr = app.stack.http_addr;
    tokio::task::spawn_blocking(move || {
        // Slowloris: a header byte every 100 ms would take 6 s; the door closes after 0.5.
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"POST /users HTTP/1.1\r\nHost: x\r\n").expect("write");
        let t0 = Instant::now();
        let mut cut = None;
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            std::thread::sleep(Duration::from_millis(100));
            if s.write_all(&[*b]).is_err() {
                cut = Some(t0.elapsed());
                break;
            }
            // A closed connection shows on read before a write fails.
            s.set_nonblocking(true).expect("nonblocking");
            let mut one = [0u8; 1];
            let closed = matches!(s.read(&mut one), Ok(0));
            s.set_nonblocking(false).expect("blocking");
            if closed {
                cut = Some(t0.elapsed());
                break;
            }
        }
        let cut = cut.expect("the slow client was disconnected");
        assert!(cut < Duration::from_millis(2_000), "cut after {cut:?}");

        // An idle connection that never sends a request is closed too.
        let mut idle = std::net::TcpStream::connect(addr).expect("connect");
        let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(3));
        assert!(closed, "idle connection kept open");

        // A body that is promised and then dribbled: 408, connection closed.
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\"")
            .expect("write");
        let t0 = Instant::now();
        let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(3));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
        assert!(closed, "connection closed after the 408");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

        // A chunked body that grows past the limit: 413, connection closed.
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"POST /users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("write");
        for _ in 0..3 {
            let chunk = format!("200\r\n{}\r\n", "a".repeat(512));
            if s.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(3));
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(closed, "connection closed after the 413");

        // A declared size over the limit is refused before a byte of it is sent.
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n")
            .expect("write");
        let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(3));
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
        assert!(closed, "connection closed after the 413");
    })
    .await
    .expect("raw client");

    // Well-behaved clients are served as before.
    let (s, _, b) = send(
        app.http
            .post(format!("{}/users", app.base))
            .json(&creds("ada@example.com", "correct horse")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    app.stop().await;
}
