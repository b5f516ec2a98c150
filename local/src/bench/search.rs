//! `--max`: the highest open-loop rate the run sustains within a p99 bound, by steps on one
//! runner.

use super::client::{self, Watcher};
use super::setup::Setup;
use super::stats::{self, Latency};
use super::{BenchArgs, DRAIN_LIMIT, Flavor, bar, write_json};
use serde_json::json;
use std::time::{Duration, Instant};

/// Most steps of --max, and how much faster each one goes.
const MAX_STEPS: usize = 12;
const STEP_FACTOR: f64 = 1.25;

/// One step of --max.
#[derive(Debug, Clone, serde::Serialize)]
struct Step {
    rate: f64,
    window_secs: f64,
    orders_final_per_sec: f64,
    /// From the first final order to the last (see `stats::drain_rate`).
    drain_per_sec: f64,
    client_latency_ms: Latency,
    retried: u64,
    errors: u64,
    complete: bool,
    pass: bool,
}

pub async fn search(
    setup: &mut Setup,
    base_cfg: &shared::Config,
    args: &BenchArgs,
) -> anyhow::Result<bool> {
    let config = setup.config(args, base_cfg).await;
    let watcher = Watcher::new(&setup.iso.cfg.database_url, setup.flavor.orders_table())?;
    let mut rate = args.rate.filter(|r| *r > 0.0).unwrap_or(50.0);
    let mut steps: Vec<Step> = Vec::new();
    println!(
        "searching the highest rate with client p99 <= {} ms, no error, no retry, drained at {}% of the rate or more ({} orders a step)",
        args.p99_ms,
        stats::SUSTAINED_SHARE * 100.0,
        args.orders
    );
    for step in 0..MAX_STEPS {
        let load = setup.load(args, step * args.orders, Some(rate));
        let (placed, finals) = (
            bar(args.orders as u64, "placed"),
            bar(args.orders as u64, "final"),
        );
        let out = client::run(
            &setup.http,
            &watcher,
            &load,
            Instant::now(),
            DRAIN_LIMIT,
            (&placed, &finals),
        )
        .await?;
        placed.finish();
        finals.finish();
        setup.quiet(Duration::from_secs(120)).await?;
        let window = stats::window(&out.records, out.stopped_at);
        let retries = stats::retries(&out.records);
        let client_ms: Vec<f64> = out
            .records
            .iter()
            .filter_map(|r| r.client_latency_ms())
            .collect();
        let latency = Latency::of(&client_ms);
        let finals_n = client_ms.len() as u64;
        let drain = stats::drain_rate(&out.records).unwrap_or(0.0);
        let s = Step {
            rate,
            window_secs: window.secs,
            orders_final_per_sec: finals_n as f64 / window.secs,
            drain_per_sec: drain,
            client_latency_ms: latency,
            retried: retries.orders_retried,
            errors: retries.errors(),
            complete: window.complete,
            pass: window.complete
                && retries.errors() == 0
                && !retries.happened()
                && latency.p99 <= args.p99_ms
                && drain >= stats::SUSTAINED_SHARE * rate,
        };
        println!(
            "rate {:>8.1}/s: {:.1} final/s over {:.2} s (drained at {:.1}/s), client p99 {:.1} ms (max {:.1}), {} retried, {} errors -> {}",
            s.rate,
            s.orders_final_per_sec,
            s.window_secs,
            s.drain_per_sec,
            latency.p99,
            latency.max,
            s.retried,
            s.errors,
            if s.pass { "pass" } else { "FAIL" }
        );
        let pass = s.pass;
        steps.push(s);
        if !pass {
            break;
        }
        rate *= STEP_FACTOR;
    }
    watcher.pool.close().await;
    let best = steps
        .iter()
        .filter(|s| s.pass)
        .map(|s| s.rate)
        .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))));
    match best {
        Some(r) => println!(
            "highest rate meeting the bound: {r:.1} orders/s (the next step failed or steps ran out)"
        ),
        None => println!("no step met the bound: start lower with --rate"),
    }
    let ctx = shared::context::Context::new(setup.iso.cfg.clone())?;
    let violations: Vec<String> = if setup.flavor == Flavor::Flow {
        crate::verify::run(&ctx, &setup.queues, &crate::verify::Expect::default())
            .await?
            .iter()
            .filter(|c| !c.ok())
            .map(|c| c.line())
            .collect()
    } else {
        Vec::new()
    };
    ctx.pool.close().await;
    for v in &violations {
        println!("VIOLATION: {v}");
    }
    write_json(
        args,
        &json!({"kind": format!("{} --max", setup.flavor.kind()), "config": config, "p99_bound_ms": args.p99_ms,
                "steps": steps, "highest_passing_rate": best, "violations": violations}),
    )?;
    Ok(best.is_some() && violations.is_empty())
}
