//! One measured run: settle, read every counter, place and watch, read them again once all
//! work is done, and build the report.

use super::client::{self, Watcher};
use super::report::{self, Cpu, Memory, Report};
use super::setup::Setup;
use super::stats::{self, Group, Latency, Work};
use super::{BenchArgs, DRAIN_LIMIT, Flavor, SETTLE, bar, probe, write_json};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub async fn measure(
    setup: &mut Setup,
    base_cfg: &shared::Config,
    args: &BenchArgs,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let config = setup.config(args, base_cfg).await;
    let db_name = setup.iso.db_name.clone();
    let mgmt = probe::Management::new(&setup.iso.cfg).ok();
    let table = setup.flavor.orders_table();
    let (inbox_before, outbox_before) = {
        let w = Watcher::new(&setup.iso.cfg.database_url, table)?;
        setup.quiet(Duration::from_secs(60)).await?;
        let rows = probe::rows(&w.pool).await?;
        w.pool.close().await;
        rows
    };
    println!(
        "set-up done; waiting {} s for Postgres and RabbitMQ to count it",
        SETTLE.as_secs()
    );
    tokio::time::sleep(SETTLE).await;
    // The broker's counters first (waiting for them adds nothing to the others), then the
    // commit counter, then CPU, right before the first send.
    let metrics_before = probe::scrape(&setup.http, &setup.iso.metrics_base).await;
    let broker_before = settled_counts(mgmt.as_ref(), &setup.iso.cfg.prefix, &metrics_before).await;
    let commits_before =
        probe::commits(&mut probe::admin(&setup.iso.db_url).await?, &db_name).await?;
    let procs_before = probe::procs();
    let rss_at_start = probe::memory(setup.pid).map_or(0, |m| m.0);

    let watcher = Watcher::new(&setup.iso.cfg.database_url, table)?;
    let t0 = Instant::now();
    let t0_wall = chrono::Utc::now();
    let peak = Arc::new(Mutex::new(rss_at_start));
    let sampler = {
        let (peak, pid) = (peak.clone(), setup.pid);
        tokio::spawn(async move {
            while let Some((rss, _)) = probe::memory(pid) {
                if let Ok(mut p) = peak.lock() {
                    *p = (*p).max(rss);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let load = setup.load(args, 0, args.rate);
    let (placed, finals) = (
        bar(args.orders as u64, "placed"),
        bar(args.orders as u64, "final"),
    );
    let out = client::run(
        &setup.http,
        &watcher,
        &load,
        t0,
        DRAIN_LIMIT,
        (&placed, &finals),
    )
    .await?;
    placed.finish();
    finals.finish();
    setup.quiet(Duration::from_secs(120)).await?;
    let procs_after = probe::procs();
    let metrics_after = probe::scrape(&setup.http, &setup.iso.metrics_base).await;
    sampler.abort();
    let memory_end = probe::memory(setup.pid).unwrap_or_default();

    // Stopping the runner and closing the watcher's connection make their backends exit,
    // which is when Postgres counts their last transactions.
    if let Some(runner) = setup.runner.as_mut() {
        crate::child::stop(runner).await;
    }
    setup.runner = None;
    watcher.pool.close().await;
    let mut admin = probe::admin(&setup.iso.db_url).await?;
    let flushed = Instant::now();
    while probe::backends(&mut admin, &db_name).await? > 0
        && flushed.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let commits_after = probe::commits(&mut admin, &db_name).await?;
    let own_queries = watcher.queries.load(Ordering::SeqCst) as i64;
    let broker_after = settled_counts(mgmt.as_ref(), &setup.iso.cfg.prefix, &metrics_after).await;

    let ctx = shared::context::Context::new(setup.iso.cfg.clone())?;
    let (inbox_after, outbox_after) = probe::rows(&ctx.pool).await?;
    let window = stats::window(&out.records, out.stopped_at);
    let window_end = t0_wall + chrono::Duration::milliseconds((window.secs * 1000.0) as i64);
    let messages_in_window = probe::handled_between(&ctx.pool, t0_wall, window_end).await?;
    let server = Latency::of(&probe::server_latencies(&ctx.pool, table).await?);
    let mut stages = Vec::new();
    for schema in crate::registry::OUTBOX_SCHEMAS {
        stages.extend(shared::db::stage_latencies(&ctx.pool, schema).await?);
    }
    let accepted = out.records.iter().filter(|r| r.accepted.is_some()).count() as u64;
    let finals_n = out
        .records
        .iter()
        .filter(|r| r.final_seen.is_some())
        .count() as u64;
    let outcomes = match setup.flavor {
        Flavor::Flow => probe::outcomes(&ctx.pool).await?,
        Flavor::Baseline => Default::default(),
    };
    let mut violations: Vec<String> = match setup.flavor {
        Flavor::Flow => crate::verify::run(&ctx, &setup.queues, &crate::verify::Expect::default())
            .await?
            .iter()
            .filter(|c| !c.ok())
            .map(|c| c.line())
            .collect(),
        Flavor::Baseline => {
            let names = &ctx.names;
            let dlqs: Vec<String> = setup
                .queues
                .iter()
                .map(|q| names.dead_letter_queue(q))
                .collect();
            stats::baseline_violations(
                accepted,
                finals_n,
                probe::unpublished(&ctx.pool).await?,
                probe::ready(&setup.iso.cfg.amqp_url, &dlqs).await?,
            )
        }
    };
    violations.extend(stats::expired_violation(&outcomes));
    ctx.pool.close().await;

    let (broker_work, sources) = match (broker_before, broker_after) {
        (Some(b), Some(a)) => (
            Some((a.deliveries.saturating_sub(b.deliveries), a.publishes.saturating_sub(b.publishes))),
            "deliveries and publishes: RabbitMQ management API, deliver_get of the run's queues and publish_in of its exchanges (every publish is confirmed)".to_string(),
        ),
        _ => (
            None,
            "deliveries and publishes: the runner's own counters (the management API did not answer)".to_string(),
        ),
    };
    let app = |name: &str| {
        stats::prom_sum(&metrics_after, name, &[]) - stats::prom_sum(&metrics_before, name, &[])
    };
    let app_messages = app("orderflow_messages_total");
    let app_publishes = app("orderflow_events_published_total");
    let total = Work {
        deliveries: broker_work.map_or(app_messages, |w| w.0 as f64),
        publishes: broker_work.map_or(app_publishes, |w| w.1 as f64),
        commits: (commits_after - commits_before - own_queries) as f64,
        inbox_rows: (inbox_after - inbox_before) as f64,
        outbox_rows: (outbox_after - outbox_before) as f64,
        batches: app("orderflow_batch_size_count"),
    };
    let declined = out
        .accepted
        .iter()
        .filter(|i| client::card(**i) != "tok_visa")
        .count() as u64;
    let (expected_d, expected_p) = crate::baseline::model::expected_per_order(
        &crate::baseline::model::consumers(&setup.specs),
        accepted,
        declined,
    );
    let per = |x: f64| x / accepted.max(1) as f64;
    let groups = [
        (format!("runner (pid {})", setup.pid), Group::Pid(setup.pid)),
        (
            "postgres (every postgres process)".to_string(),
            Group::Comm("postgres"),
        ),
        (
            "rabbitmq (beam.smp and children)".to_string(),
            Group::Tree("beam.smp"),
        ),
        (
            "redis (redis-server)".to_string(),
            Group::Comm("redis-server"),
        ),
        (
            "bench (this process)".to_string(),
            Group::Pid(std::process::id()),
        ),
    ];
    let cpu: Vec<Cpu> = groups
        .into_iter()
        .map(|(who, g)| {
            let secs =
                stats::group_ticks(&procs_before, &procs_after, &g) as f64 / probe::TICKS_PER_SEC;
            Cpu {
                who,
                processes: stats::members(&procs_after, &g).len(),
                cpu_secs: secs,
                ms_per_order: per(secs * 1000.0),
            }
        })
        .collect();
    let retries = stats::retries(&out.records);
    let client_ms: Vec<f64> = out
        .records
        .iter()
        .filter_map(|r| r.client_latency_ms())
        .collect();
    let lags: Vec<f64> = out.records.iter().filter_map(|r| r.send_lag_ms()).collect();
    let mut report = Report {
        kind: setup.flavor.kind().into(),
        command,
        rates: stats::rates(&window, finals_n, accepted, messages_in_window as u64),
        placing_secs: out
            .records
            .iter()
            .filter_map(|r| r.accepted)
            .fold(0.0, f64::max),
        window,
        orders_requested: args.orders,
        orders_accepted: accepted,
        orders_final: finals_n,
        messages_in_window: messages_in_window as u64,
        client_latency_ms: Latency::of(&client_ms),
        client_latency_from: if args.rate.is_some() {
            "each order's scheduled send (open loop: a late send counts)".into()
        } else {
            "each order's first attempt (closed loop: no schedule)".into()
        },
        server_latency_ms: server,
        send_lag_ms: args.rate.map(|_| Latency::of(&lags)),
        watch: out.watch,
        retries,
        stages,
        work_total: total,
        work_per_order: total.per_order(accepted),
        expected_deliveries_per_order: expected_d,
        expected_publishes_per_order: expected_p,
        app_messages_per_order: per(app_messages),
        app_publishes_per_order: per(app_publishes),
        work_sources: vec![
            sources,
            format!(
                "commits: pg_stat_database.xact_commit of the run's database (every transaction, each autocommit statement one), less the bench's own {own_queries} (its queries and connections)"
            ),
            "inbox and outbox rows: counted in every service's tables".into(),
        ],
        cpu_ms_per_order_total: cpu.iter().map(|c| c.ms_per_order).sum(),
        cpu,
        memory: Memory {
            rss_at_start_bytes: rss_at_start,
            rss_peak_during_run_bytes: peak.lock().map_or(0, |p| *p),
            rss_at_end_bytes: memory_end.0,
            high_water_mark_bytes: memory_end.1,
        },
        violations,
        outcomes,
        config,
        ..Default::default()
    };
    if let Some(path) = &args.compare {
        report.comparison = Some(report::compare_with(&report, path)?);
        report.compared_with = Some(path.display().to_string());
    }
    report.wall_secs = started.elapsed().as_secs_f64();
    print!("{}", report::render(&report));
    write_json(args, &serde_json::to_value(&report)?)?;
    Ok(report.violations.is_empty()
        && report.retries.errors() == 0
        && report.window.complete
        && report.comparison.as_ref().is_none_or(|c| c.like_for_like()))
}

/// The management API's counters once they are current. The broker refreshes them every
/// 5 s, later when it is busy: they count as current once they have reached what the
/// runner's own counters (`metrics`) say was delivered and published and stopped moving, or
/// when they have not moved for 8 s (they then differ from the runner's, and the report
/// shows both), or after a minute.
async fn settled_counts(
    m: Option<&probe::Management>,
    prefix: &str,
    metrics: &str,
) -> Option<probe::BrokerCounts> {
    let m = m?;
    let delivered = stats::prom_sum(metrics, "orderflow_messages_total", &[]);
    let published = stats::prom_sum(metrics, "orderflow_events_published_total", &[]);
    let started = Instant::now();
    let mut last = m.counts(prefix).await.ok()?;
    let mut still_since = Instant::now();
    loop {
        let still = still_since.elapsed();
        if (probe::caught_up(&last, delivered, published) && still >= Duration::from_secs(1))
            || still >= Duration::from_secs(8)
            || started.elapsed() >= Duration::from_secs(60)
        {
            return Some(last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = m.counts(prefix).await.ok()?;
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
}
