//! Password hashing under pressure, through the real front door: a client that hangs up
//! while its login waits for a hashing thread costs no hash (hyper drops the request's
//! future, identity's queued job sees its caller gone), and a full hashing queue answers
//! 503 with `Retry-After` at once. Alone in its own test binary: it holds this process's
//! hashing threads, which every other stack test would be waiting for.

mod common;

use identity::password::{HASHING_QUEUE, HASHING_THREADS, HashingPool};
use serde_json::json;
use std::io::Write as _;
use std::time::{Duration, Instant};

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_costs_no_hash_and_a_full_queue_is_a_quick_503() {
    let app = common::start().await;
    let creds = json!({"email": "ada@example.com", "password": "correct horse"});
    assert_eq!(
        app.send("POST", "/users", None, Some(creds.clone()))
            .await
            .0,
        201
    );

    // Hold every hashing thread of this process (the stack's functions run in it).
    let pool = HashingPool::global();
    let mut releases = Vec::new();
    let mut held = Vec::new();
    for _ in 0..HASHING_THREADS {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        held.push(
            pool.submit(move || {
                let _ = started_tx.send(());
                let _ = hold.recv();
            })
            .expect("queued"),
        );
        started.await.expect("holding a thread");
        releases.push(release);
    }
    assert_eq!(pool.waiting(), 0);
    let skipped_before = pool.skipped();

    // A login whose client gives up while its hash waits in the queue.
    let body = creds.to_string();
    let mut client = std::net::TcpStream::connect(app.stack.http_addr).expect("connect");
    client
        .write_all(
            format!(
                "POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .expect("write");
    until("the login's hash to be queued", || pool.waiting() == 1).await;
    drop(client);

    // Fill the rest of the queue: the next login is refused at once.
    let fillers: Vec<_> = (1..HASHING_QUEUE)
        .map(|_| pool.submit(|| ()).expect("room in the queue"))
        .collect();
    let started = Instant::now();
    let resp = app
        .http
        .post(format!("{}/sessions", app.base))
        .json(&creds)
        .send()
        .await
        .expect("HTTP");
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "busy", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered in {:?}, not queued",
        started.elapsed()
    );

    // Let the threads go: the abandoned login's hash is skipped, the rest run.
    drop(releases);
    for h in held {
        h.await.expect("ran");
    }
    for f in fillers {
        f.await.expect("ran");
    }
    assert_eq!(
        pool.skipped(),
        skipped_before + 1,
        "the abandoned hash was skipped"
    );

    // And logins are served again.
    assert_eq!(
        app.send("POST", "/sessions", None, Some(creds)).await.0,
        201
    );
    app.stop().await;
}
