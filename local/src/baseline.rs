//! `orderflow bench --baseline`: what the machine allows for the same shape of work with no
//! business logic. Per order, as in the real flow: one commit and one publish to create it;
//! three consumers of `created` (one commit each, two of them publish a result); a saga
//! consumer committing each result and publishing `final` on the second; two consumers of
//! `final` (one commit each). Same servers, durable quorum queues, publisher confirms, and
//! the same batching as the runner (up to 100 messages per transaction, confirms pipelined).

use crate::bench::{BenchArgs, Latency, Report, bar, sample_proc};
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BATCH: u16 = 100;

/// (queue suffix, bound key, stage name, what it publishes next)
const STAGES: [(&str, &str, &str, Option<&str>); 6] = [
    ("reserve", "created", "reserve", Some("result")),
    ("pay", "created", "pay", Some("result")),
    ("notify", "created", "notify", None),
    ("saga", "result", "saga", Some("final")),
    ("settle", "final", "settle", None),
    ("notify-final", "final", "notify-final", None),
];

async fn publish_all(
    ch: &Channel,
    exchange: &str,
    key: &str,
    bodies: &[Vec<u8>],
) -> anyhow::Result<()> {
    let mut confirms = Vec::with_capacity(bodies.len());
    for b in bodies {
        confirms.push(
            ch.basic_publish(
                exchange.into(),
                key.into(),
                // As the real publisher does, so both pay for the same broker work.
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?,
        );
    }
    for c in futures::future::try_join_all(confirms).await? {
        anyhow::ensure!(c.is_ack(), "broker nacked a baseline message");
        anyhow::ensure!(
            c.take_message().is_none(),
            "no baseline queue is bound for {key:?}"
        );
    }
    Ok(())
}

async fn stage_worker(
    amqp: String,
    pool: sqlx::PgPool,
    exchange: String,
    queue: String,
    stage: &'static str,
    next: Option<&'static str>,
) -> anyhow::Result<()> {
    let conn = shared::publisher::connect(&amqp, &format!("baseline-{stage}")).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.basic_qos(BATCH, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            stage.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while let Some(first) = consumer.next().await {
        let mut batch = vec![first?];
        while batch.len() < BATCH as usize {
            tokio::task::yield_now().await;
            match futures::FutureExt::now_or_never(consumer.next()) {
                Some(Some(d)) => batch.push(d?),
                _ => break,
            }
        }
        let ids: Vec<uuid::Uuid> = batch
            .iter()
            .filter_map(|d| uuid::Uuid::from_slice(&d.data).ok())
            .collect();
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO baseline.events (order_id, stage) SELECT unnest($1::uuid[]), $2")
            .bind(&ids)
            .bind(stage)
            .execute(&mut *tx)
            .await?;
        let forward: Vec<uuid::Uuid> = if stage == "saga" {
            // The second result of an order completes it (both may sit in one batch).
            let mut counts: std::collections::HashMap<uuid::Uuid, i32> =
                std::collections::HashMap::new();
            for id in &ids {
                *counts.entry(*id).or_default() += 1;
            }
            let (keys, incs): (Vec<uuid::Uuid>, Vec<i32>) =
                counts.iter().map(|(k, v)| (*k, *v)).unzip();
            let rows: Vec<(uuid::Uuid, i32)> = sqlx::query_as(
                "INSERT INTO baseline.saga (order_id, n) SELECT * FROM unnest($1::uuid[], $2::int[])
                 ON CONFLICT (order_id) DO UPDATE SET n = baseline.saga.n + excluded.n RETURNING order_id, n",
            )
            .bind(&keys)
            .bind(&incs)
            .fetch_all(&mut *tx)
            .await?;
            rows.into_iter()
                .filter(|(id, n)| *n >= 2 && n - counts[id] < 2)
                .map(|(id, _)| id)
                .collect()
        } else {
            ids.clone()
        };
        tx.commit().await?;
        if let Some(key) = next {
            let bodies: Vec<Vec<u8>> = forward.iter().map(|id| id.as_bytes().to_vec()).collect();
            publish_all(&ch, &exchange, key, &bodies).await?;
        }
        if let Some(last) = batch.last() {
            ch.basic_ack(last.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    Ok(())
}

pub async fn run(
    base_cfg: &shared::Config,
    args: &BenchArgs,
    command: String,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let iso = crate::child::isolate(base_cfg, "base", &run_id, &[])?;
    crate::stack::create_database_if_missing(&iso.cfg.database_url).await?;
    let pool = shared::db::pool(&iso.cfg.database_url, 16)?;
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS baseline;
         CREATE TABLE IF NOT EXISTS baseline.events (order_id uuid NOT NULL, stage text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
         CREATE TABLE IF NOT EXISTS baseline.saga (order_id uuid PRIMARY KEY, n int NOT NULL);",
    )
    .execute(&pool)
    .await?;
    let prefix = iso.cfg.prefix.clone();
    let exchange = format!("{prefix}baseline");
    let conn = shared::publisher::connect(&iso.cfg.amqp_url, "baseline").await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let mut workers = Vec::new();
    for (suffix, key, stage, next) in STAGES {
        let queue = format!("{prefix}baseline.{suffix}");
        let mut qargs = FieldTable::default();
        qargs.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            qargs,
        )
        .await?;
        ch.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        workers.push(tokio::spawn(stage_worker(
            iso.cfg.amqp_url.clone(),
            pool.clone(),
            exchange.clone(),
            queue,
            stage,
            next,
        )));
    }

    let pid = std::process::id();
    let before = sample_proc(pid);
    let cpu_before = before.as_ref().map(|s| s.cpu_secs).unwrap_or(0.0);
    let rss_at_start = before.as_ref().map(|s| s.rss_bytes).unwrap_or(0);
    let t0 = Instant::now();
    let placed = bar(args.orders as u64, "placed");
    let next = Arc::new(AtomicUsize::new(0));
    let rate_tick = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let clients = futures::future::join_all((0..args.concurrency.max(1)).map(|_| {
        let (pool, next, pb, amqp, exchange) = (
            pool.clone(),
            next.clone(),
            placed.clone(),
            iso.cfg.amqp_url.clone(),
            exchange.clone(),
        );
        let n = args.orders;
        async move {
            let conn = shared::publisher::connect(&amqp, "baseline-client").await?;
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    let _ = conn.close(200, "done".into()).await;
                    return anyhow::Ok(());
                }
                if let Some(tick) = rate_tick {
                    tokio::time::sleep_until((t0 + tick * i as u32).into()).await;
                }
                let id = uuid::Uuid::now_v7();
                sqlx::query("INSERT INTO baseline.events (order_id, stage) VALUES ($1, 'create')")
                    .bind(id)
                    .execute(&pool)
                    .await?;
                publish_all(&ch, &exchange, "created", &[id.as_bytes().to_vec()]).await?;
                pb.inc(1);
            }
        }
    }))
    .await;
    placed.finish();
    clients.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let placing_secs = t0.elapsed().as_secs_f64();
    let rss_at_backlog_peak = sample_proc(pid).map(|s| s.rss_bytes).unwrap_or(0);

    let done_bar = bar(args.orders as u64, "final");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM baseline.events WHERE stage = 'settle'")
                .fetch_one(&pool)
                .await?;
        done_bar.set_position(done as u64);
        if done as usize >= args.orders || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done_bar.finish();
    let end = sample_proc(pid);
    let (completed, span, p50, p95, p99, max, consumed): (i64, f64, f64, f64, f64, f64, i64) = sqlx::query_as(
        "WITH c AS (SELECT order_id, at FROM baseline.events WHERE stage = 'create'),
              s AS (SELECT order_id, at FROM baseline.events WHERE stage = 'settle'),
              l AS (SELECT EXTRACT(EPOCH FROM s.at - c.at) * 1000 AS ms FROM c JOIN s USING (order_id))
         SELECT (SELECT count(*) FROM s),
                COALESCE(EXTRACT(EPOCH FROM (SELECT max(at) FROM s) - (SELECT min(at) FROM c))::float8, 0),
                COALESCE((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM l)::float8, 0),
                COALESCE((SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) FROM l)::float8, 0),
                COALESCE((SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM l)::float8, 0),
                COALESCE((SELECT max(ms) FROM l)::float8, 0),
                (SELECT count(*) FROM baseline.events WHERE stage <> 'create')",
    )
    .fetch_one(&pool)
    .await?;
    for w in &workers {
        w.abort();
    }
    let cpu = end.as_ref().map(|s| s.cpu_secs).unwrap_or(cpu_before) - cpu_before;
    let span = span.max(1e-9);
    let report = Report {
        kind: "orderflow bench --baseline (bare infrastructure)".into(),
        orders: args.orders,
        completed,
        orders_per_sec: completed as f64 / span,
        accepted_per_sec: args.orders as f64 / placing_secs.max(1e-9),
        latency_ms: Latency { p50, p95, p99, max },
        stages: vec![],
        messages_consumed: consumed,
        messages_per_sec: consumed as f64 / span,
        runner_cpu_seconds: cpu,
        runner_cpu_percent: cpu / span * 100.0,
        peak_rss_bytes: end.as_ref().map(|s| s.hwm_bytes).unwrap_or(0),
        rss_at_start_bytes: rss_at_start,
        peak_rss_during_run_bytes: end.as_ref().map(|s| s.hwm_bytes).unwrap_or(0),
        rss_at_backlog_peak_bytes: rss_at_backlog_peak,
        rss_at_end_bytes: end.as_ref().map(|s| s.rss_bytes).unwrap_or(0),
        violations: usize::from(completed as usize != args.orders),
        wall_secs: started.elapsed().as_secs_f64(),
        command,
    };
    if !args.keep {
        for (suffix, ..) in STAGES {
            ch.queue_delete(
                format!("{prefix}baseline.{suffix}").as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await?;
        }
        ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
        pool.close().await;
        crate::child::drop_database(&iso).await?;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(report)
}
