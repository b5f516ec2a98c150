//! The batch runner against the real local Postgres when a message carries data Postgres
//! refuses (SQLSTATE class 22 or 23): that message alone is parked with the SQLSTATE in its
//! reason, wherever the refusal happens (the handler's statement, the inbox or the outbox
//! shared by its chunk), and the rest of the batch is applied exactly once.

mod common;

use common::{Notes, SCHEMA, count, created};
use shared::runner::BatchReport;
use shared::testing::TestEnv;
use shared::{Encoding, Envelope};

const QUEUE: &str = "wire-notes";

async fn env() -> TestEnv {
    let env = TestEnv::new().await;
    env.migrate(SCHEMA, &common::MIGRATOR).await;
    env
}

async fn deliver(env: &TestEnv, events: &[Envelope]) -> BatchReport {
    let runner = env.ctx.batch_runner(Notes);
    runner
        .run(&env.rmq_event(QUEUE, events, Encoding::Protobuf))
        .await
        .unwrap_or_else(|e| panic!("the batch must not fail: {e}"))
}

/// `good` orders plus `bad` at `at`; the report parks exactly `bad`, with the SQLSTATE, and
/// every good one is applied, published and recorded once.
async fn assert_only_the_bad_one_is_parked(good: usize, at: usize, bad: Envelope, sqlstate: &str) {
    let env = env().await;
    let mut batch: Vec<Envelope> = (0..good)
        .map(|i| created(&format!("ord-{i}"), &format!("c{i}@example.com")))
        .collect();
    batch.insert(at, bad.clone());

    let report = deliver(&env, &batch).await;
    assert_eq!(report.processed, good, "{report:?}");
    assert_eq!(report.duplicates, 0, "{report:?}");
    assert_eq!(report.parked.len(), 1, "{report:?}");
    assert_eq!(
        report.parked[0].message_id.as_deref(),
        Some(bad.event_id.as_str())
    );
    assert!(
        report.parked[0]
            .reason
            .contains(&format!("SQLSTATE {sqlstate}")),
        "{report:?}"
    );
    assert_eq!(report.published, good, "{report:?}");

    let pool = &env.ctx.pool;
    assert_eq!(
        count(pool, "notes").await,
        good as i64,
        "one note per good order"
    );
    assert_eq!(
        count(pool, "inbox").await,
        good as i64,
        "the parked one is not in the inbox"
    );
    assert_eq!(
        count(pool, "outbox").await,
        good as i64,
        "one event per good order"
    );
    let (unpublished, _) = shared::db::outbox_backlog(pool, SCHEMA)
        .await
        .expect("backlog");
    assert_eq!(unpublished, 0);
    let published = env.published();
    assert_eq!(published.len(), good);
    assert!(published.iter().all(|e| e.causation_id != bad.event_id));

    let parked = env.parked();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].message_id.as_deref(), Some(bad.event_id.as_str()));
    assert_eq!(parked[0].routing_key, env.ctx.names.queue(QUEUE));
    match parked[0].header(shared::topology::parked::REASON) {
        Some(shared::publisher::HeaderVal::Str(reason)) => {
            assert!(reason.contains(&format!("SQLSTATE {sqlstate}")), "{reason}")
        }
        other => panic!("parked without a reason: {other:?}"),
    }

    // The same batch again (a redelivery): the good ones are duplicates, nothing is
    // applied twice; the bad one is refused and parked again.
    env.clear_published();
    let again = deliver(&env, &batch).await;
    assert_eq!(again.processed, 0, "{again:?}");
    assert_eq!(again.duplicates, good, "{again:?}");
    assert_eq!(again.parked.len(), 1, "{again:?}");
    assert_eq!(count(pool, "notes").await, good as i64);
    assert!(env.published().is_empty());
}

#[tokio::test]
async fn a_nul_byte_the_handler_writes_to_a_text_column_parks_that_message_alone() {
    // The handler's own statement fails; its savepoint is rolled back, the chunk goes on.
    assert_only_the_bad_one_is_parked(3, 1, created("ord-nul", "nul\0@example.com"), "22021").await;
}

#[tokio::test]
async fn an_occurred_at_out_of_the_timestamp_range_fails_the_chunk_inbox_and_parks_that_message_alone()
 {
    // The inbox records the whole chunk in one statement, occurred_at included: the chunk is
    // rolled back and run again one message per transaction.
    let mut bad = created("ord-late", "late@example.com");
    bad.occurred_at_ms = i64::MAX;
    assert_only_the_bad_one_is_parked(3, 2, bad, "22008").await;
}

#[tokio::test]
async fn an_outgoing_event_postgres_refuses_in_the_outbox_parks_the_message_that_caused_it() {
    // The order id is passed on to the outgoing event, whose correlation id the outbox
    // stores; the incoming envelope's own correlation id is clean, so inbox and handler pass.
    let mut bad = created("ord\0nul", "nul-order@example.com");
    bad.correlation_id = "ord-clean".into();
    assert_only_the_bad_one_is_parked(3, 0, bad, "22021").await;
}

#[tokio::test]
async fn a_bad_message_in_a_later_chunk_leaves_the_earlier_chunk_committed_as_usual() {
    // 40 messages are two chunks (32 + 8): only the second one is run message by message.
    let mut bad = created("ord-late", "late@example.com");
    bad.occurred_at_ms = i64::MIN;
    assert_only_the_bad_one_is_parked(39, 35, bad, "22008").await;
}

#[tokio::test]
async fn two_copies_of_a_refused_message_in_one_batch_are_parked_once() {
    let env = env().await;
    let mut bad = created("ord-late", "late@example.com");
    bad.occurred_at_ms = i64::MAX;
    let good = created("ord-1", "a@example.com");
    let report = deliver(&env, &[bad.clone(), good, bad]).await;
    assert_eq!(report.processed, 1, "{report:?}");
    assert_eq!(report.parked.len(), 1, "{report:?}");
    assert_eq!(report.duplicates, 1, "{report:?}");
    assert_eq!(env.parked().len(), 1);
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_still_fails_the_invocation_and_parks_nothing() {
    let env = env().await;
    let batch = [
        created("ord-1", "a@example.com"),
        created("ord-2", "b@example.com"),
    ];
    env.ctx.pool.close().await;
    let runner = env.ctx.batch_runner(Notes);
    let err = runner
        .run(&env.rmq_event(QUEUE, &batch, Encoding::Protobuf))
        .await
        .expect_err("a closed pool is an infrastructure failure");
    assert_eq!(err.committed, 0);
    assert!(
        env.parked().is_empty(),
        "nothing parked: the batch comes back"
    );
    assert!(env.published().is_empty());
}
