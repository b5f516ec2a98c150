//! `orderflow chaos`: the fault-injection suite, a referee that can fail. It starts the
//! runner as a child process (faults switched on in its configuration), places a planned
//! mix of orders over HTTP while it closes every broker connection, restarts Redis,
//! terminates the Postgres backends and SIGKILLs the runner while deliveries are in flight
//! (then starts it again), waits for every order to settle, and judges the run on three
//! counts: the invariants (`crate::verify`), each order's final state against its inputs
//! (`crate::outcomes`), and every announced fault having fired (`referee`). Everything runs
//! in a fresh database and a fresh name prefix.

mod after;
mod client;
mod inject;
pub mod plan;
pub mod referee;

use crate::child::{Isolated, Runner, RunnerLog, post_retrying, spawn_runner, wait_healthy};
use crate::outcomes::{self, Class, Final, Placed};
use client::Client;
use futures::StreamExt as _;
use referee::{External, KillEvidence, Kind};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct ChaosArgs {
    /// Orders to place (at least 4, so that every outcome occurs).
    #[arg(long, default_value_t = 300)]
    pub orders: usize,
    /// Orders placed per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// In-process faults given to the runner (ORDERFLOW_FAULTS).
    #[arg(
        long,
        default_value = "error=0.03,crash=0.02,slow=0.03,slow_ms=100,duplicate=0.05"
    )]
    pub faults: String,
    /// External faults to skip.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub skip: Vec<External>,
    /// Keep the run's database and broker objects afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// How long the suite looks for deliveries in flight before it kills the runner anyway.
const KILL_LOOK_BOUND: Duration = Duration::from_secs(15);

/// The order deadline the runner gets. An order this old is one whose saga lost an input:
/// runs settle in seconds, and the settle wait below gives up long before it.
const PENDING_TIMEOUT_SECS: &str = "300";
const SETTLE_BOUND: Duration = Duration::from_secs(240);
/// Orders the second act places and cancels at once, racing their saga.
const RACING_CANCELS: usize = 10;

/// Every order, retried: the checker's connections suffer the faults too.
async fn read_orders(ctx: &shared::context::Context) -> anyhow::Result<Vec<order::OrderRow>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match order::orders(&ctx.pool).await {
            Ok(o) => return Ok(o),
            Err(e) if attempt < 5 => {
                tracing::warn!(error = %e, "reading the orders failed, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context("reading the orders")),
        }
    }
}

/// (orders, of which pending, messages and outbox rows still waiting).
async fn settle_state(
    ctx: &shared::context::Context,
    queues: &[String],
) -> anyhow::Result<(usize, usize, usize)> {
    let orders = order::orders(&ctx.pool).await?;
    let pending = orders.iter().filter(|o| o.status == "PENDING").count();
    let busy = crate::broker::busy(ctx, queues).await? as usize;
    Ok((orders.len(), pending, busy))
}

/// What the external faults did: a report line each, and the count that says they fired.
#[derive(Default)]
struct Injected {
    lines: Vec<String>,
    fired: BTreeMap<Kind, usize>,
    kill: Option<KillEvidence>,
}

impl Injected {
    fn record(&mut self, kind: External, fired: usize, line: String) {
        println!("injected: {line}");
        self.lines.push(line);
        self.fired.insert(Kind::External(kind), fired);
    }
}

pub async fn run(
    base_cfg: shared::Config,
    template: &crate::template::Source,
    args: ChaosArgs,
) -> anyhow::Result<bool> {
    let specs = template.specs()?;
    let queues = &crate::template_queues(&specs)[..];
    let started = Instant::now();
    // Everything that can be refused is refused before anything starts.
    let faults = shared::faults::Faults::parse(&args.faults)
        .map_err(|e| anyhow::anyhow!("--faults: {e}"))?;
    let announced = referee::announced(&faults, &args.skip);
    inject::preflight(&base_cfg, &args.skip)?;
    let plan = plan::orders(args.orders);
    let catalog = plan::catalog(&plan);
    let stock: BTreeMap<String, i64> = catalog
        .iter()
        .map(|p| (p.product_id.clone(), i64::from(p.stock)))
        .collect();
    let certain = outcomes::guaranteed(&plan, &stock);
    anyhow::ensure!(
        certain == Class::ALL.into(),
        "--orders {}: too few for every outcome (confirmed, declined, out of stock) to occur; chaos needs at least 4",
        args.orders
    );

    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let mut iso = crate::child::isolate(
        &base_cfg,
        "chaos",
        &run_id,
        &[
            ("ORDERFLOW_FAULTS", &args.faults),
            ("ORDERFLOW_SCHEDULE_EVERY_SECS", "1"),
            ("ORDER_PENDING_TIMEOUT_SECS", PENDING_TIMEOUT_SECS),
            // Replaces isolate's `warn`: the bridge's debug lines say which batches are in
            // flight, the evidence for the kill.
            ("RUST_LOG", "warn,local::bridge=debug"),
        ],
    )?;
    // The runner it starts reads the same template (`--template`, e.g. with shards).
    iso.env.extend(template.child_env());
    let (cfg, env, base) = (iso.cfg.clone(), iso.env.clone(), iso.base.clone());
    println!(
        "chaos run {run_id}: {} orders at {}/s, runner faults {:?}, announced faults: {}, database {}",
        args.orders,
        args.rate,
        args.faults,
        announced
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        iso.db_url.path()
    );
    println!("{}", crate::child::RATE_LIMITS_NOTE);

    crate::stack::prepare(&cfg, &specs).await?;
    let ctx = shared::context::Context::new(cfg.clone())?;
    let log: Arc<Mutex<RunnerLog>> = Arc::default();
    let mut runner = spawn_runner(&env, log.clone()).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    wait_healthy(&http, &base, Duration::from_secs(60)).await?;
    crate::seed::seed(&ctx, &catalog, Some(Duration::from_secs(60))).await?;

    // Sessions live in Redis, which keeps nothing on disk here: after the Redis restart
    // every token is dead and clients log in again, as real ones would.
    let mut users = Vec::new();
    for i in 0..10 {
        let creds = json!({"email": format!("chaos-{run_id}-{i}@example.com"), "password": "correct horse battery"});
        post_retrying(&http, &format!("{base}/users"), None, None, &creds).await?;
        users.push(creds);
    }
    let client = Client {
        http: http.clone(),
        base: base.clone(),
        users: Arc::new(users),
        tokens: Arc::default(),
        relogins: Arc::default(),
        run_id: run_id.clone(),
    };

    // Place orders at the given rate; faults are injected at milestones of progress.
    let accepted = Arc::new(AtomicUsize::new(0));
    let placer = {
        let (client, accepted, plan) = (client.clone(), accepted.clone(), plan.clone());
        let rate = args.rate.max(1.0);
        tokio::spawn(async move {
            let tick = Duration::from_secs_f64(1.0 / rate);
            futures::stream::iter(plan.into_iter().enumerate())
                .map(|(i, inputs)| {
                    let (client, accepted) = (client.clone(), accepted.clone());
                    async move {
                        tokio::time::sleep(tick * i as u32).await;
                        let result = client.place(i, &inputs).await;
                        accepted.fetch_add(1, Ordering::SeqCst);
                        // Order i belongs to user i % users (the second act acts as its owner).
                        result.map(|order_id| (i % client.users.len(), Placed { order_id, inputs }))
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<_>>()
                .await
        })
    };

    let injected = inject_faults(
        &Stage {
            args: &args,
            queues,
            iso: &iso,
            ctx: &ctx,
            http: &http,
            log: &log,
            accepted: &accepted,
        },
        &mut runner,
    )
    .await?;

    let placed: Vec<(usize, Placed)> = placer.await?.into_iter().collect::<anyhow::Result<_>>()?;
    let (owners, placed): (Vec<usize>, Vec<Placed>) = placed.into_iter().unzip();
    println!(
        "placed {} orders in {:.1} s; waiting for them to settle",
        placed.len(),
        started.elapsed().as_secs_f64()
    );
    settle(&ctx, queues, placed.len()).await?;

    // Each order's decision, judged against its inputs before the second act changes some.
    let decided = read_orders(&ctx).await?;
    let confirmed: Vec<(String, usize)> = placed
        .iter()
        .zip(&owners)
        .filter(|(p, _)| {
            decided
                .iter()
                .any(|o| o.order_id.to_string() == p.order_id && o.status == "CONFIRMED")
        })
        .map(|(p, user)| (p.order_id.clone(), *user))
        .collect();
    let act = after::run(&client, &ctx, &confirmed, RACING_CANCELS).await?;
    println!(
        "after the decision: {} confirmed orders cancelled by their customers, {} refunds, {} shipped and delivered, {} orders cancelled as they were accepted",
        act.cancelled,
        act.refunds,
        act.shipped,
        act.racing.len()
    );
    settle(&ctx, queues, placed.len() + act.racing.len()).await?;

    // The first command on a connection the faults broke fails once (the Redis manager,
    // for one, reconnects on the next request): retry the read-outs a few times.
    let mut attempt = 0;
    let (orders, checks) = loop {
        attempt += 1;
        let result = async {
            anyhow::Ok((
                order::orders(&ctx.pool).await?,
                crate::verify::run(&ctx, queues, &crate::verify::Expect::default()).await?,
            ))
        }
        .await;
        match result {
            Ok(r) => break r,
            Err(e) if attempt < 5 => {
                tracing::warn!(error = %e, "verify read-out failed, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context("verifying after the run")),
        }
    };
    crate::child::stop(&mut runner).await;

    // The verdicts.
    let finals: BTreeMap<String, Final> = decided
        .iter()
        .map(|o| {
            (
                o.order_id.to_string(),
                Final {
                    status: o.status.clone(),
                    reason: o.reason.clone(),
                },
            )
        })
        .collect();
    let outcomes = outcomes::check(&placed, &stock, &finals, &certain);
    let runner_log = log.lock().map(|l| l.clone()).unwrap_or_default();
    let mut fired = injected.fired.clone();
    for (kind, n) in runner_log.faults_by_kind() {
        if let Some(fault) = shared::faults::Fault::from_name(&kind) {
            fired.insert(Kind::InProcess(fault), n);
        }
    }
    let unfired = referee::unfired(&announced, &fired);
    let kill = injected
        .kill
        .as_ref()
        .map(referee::kill_verdict)
        .unwrap_or_default();
    // Every order cancelled as it was accepted ends cancelled by its customer, whatever its
    // saga had decided by then; every second-act answer was the documented one.
    let mut second_act = act.problems.clone();
    for id in &act.racing {
        match orders.iter().find(|o| o.order_id.to_string() == *id) {
            Some(o)
                if o.status == "CANCELLED" && o.reason.as_deref() == Some("customer_cancelled") => {
            }
            Some(o) => second_act.push(format!(
                "order {id} cancelled at once ended {} {:?}",
                o.status, o.reason
            )),
            None => second_act.push(format!(
                "order {id} cancelled at once is not in the database"
            )),
        }
    }
    let ok = checks.iter().all(crate::verify::Check::ok)
        && second_act.is_empty()
        && outcomes.ok()
        && unfired.is_empty()
        && kill.is_empty();

    println!();
    println!("== chaos run {run_id} ==");
    println!(
        "orders: {} accepted, {} in the database",
        placed.len(),
        orders.len()
    );
    for (state, n) in &outcomes.states {
        println!("  {state:<30} {n}");
    }
    println!("faults injected:");
    for line in &injected.lines {
        println!("  {line}");
    }
    for (kind, n) in runner_log.faults_by_kind() {
        println!("  {n} x {kind} (in-process, by ORDERFLOW_FAULTS)");
    }
    println!(
        "  {} order requests logged in again after their session died with Redis",
        client.relogins.load(Ordering::SeqCst)
    );
    println!("verdicts:");
    println!(
        "{}",
        outcomes::verdict_line(
            "the life after the decision answered as documented, and every order cancelled at once ended cancelled by its customer",
            &format!(
                "{} cancels, {} refunds, {} shipments, {} cancels racing their saga",
                act.cancelled,
                act.refunds,
                act.shipped,
                act.racing.len()
            ),
            &second_act
        )
    );
    println!(
        "{}",
        outcomes::verdict_line(
            "every announced fault fired",
            &referee::fired_summary(&announced, &fired),
            &unfired
        )
    );
    if let Some(evidence) = &injected.kill {
        let summary = in_flight_summary(evidence, &cfg.prefix);
        println!(
            "{}",
            outcomes::verdict_line(
                "the SIGKILL hit the runner with a batch in flight",
                if summary.is_empty() {
                    "not provably in flight"
                } else {
                    &summary
                },
                &kill
            )
        );
    }
    println!("{}", outcomes.line());
    for c in &checks {
        println!("{}", c.line());
    }
    println!(
        "took {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        if ok { "PASSED" } else { "FAILED" }
    );

    if !args.keep && ok {
        ctx.pool.close().await;
        crate::child::cleanup(&iso, &specs).await?;
    } else if !ok {
        println!(
            "kept database {} and prefix {} for inspection",
            iso.db_url.path(),
            cfg.prefix
        );
    }
    Ok(ok)
}

/// What the fault phase works with.
struct Stage<'a> {
    args: &'a ChaosArgs,
    queues: &'a [String],
    iso: &'a Isolated,
    ctx: &'a shared::context::Context,
    http: &'a reqwest::Client,
    log: &'a Arc<Mutex<RunnerLog>>,
    /// Orders answered so far (accepted or failed): the milestones count these.
    accepted: &'a Arc<AtomicUsize>,
}

/// Injects each external fault not skipped at its milestone of the orders placed (15, 35,
/// 55, 75 %), restarting the runner after the kill, and gathers what each did.
async fn inject_faults(stage: &Stage<'_>, runner: &mut Runner) -> anyhow::Result<Injected> {
    let Stage {
        args,
        queues,
        iso,
        ctx,
        http,
        log,
        accepted,
    } = *stage;
    let (cfg, env, base) = (&iso.cfg, &iso.env, &iso.base);
    let mut injected = Injected::default();
    let at = |fraction: f64| (args.orders as f64 * fraction) as usize;
    let wait_for = |n: usize| {
        let accepted = accepted.clone();
        async move {
            while accepted.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let skip = |k: External| args.skip.contains(&k);
    if !skip(External::Broker) {
        wait_for(at(0.15)).await;
        let lost_before = log.lock().map(|l| l.broker_lost).unwrap_or(0);
        inject::close_broker_connections().await?;
        // The triggers say so as they reconnect; give them a moment to.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut lost = 0;
        while lost < queues.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            lost = log
                .lock()
                .map(|l| l.broker_lost)
                .unwrap_or(0)
                .saturating_sub(lost_before);
        }
        injected.record(
            External::Broker,
            lost,
            format!(
                "closed every broker connection (rabbitmqctl close_all_connections): {lost} trigger(s) of the runner lost the broker and reconnected"
            ),
        );
    }
    if !skip(External::Redis) {
        wait_for(at(0.35)).await;
        let r = inject::restart_redis(&cfg.redis_url).await?;
        let fired = usize::from(r.run_id_before != r.run_id_after);
        injected.record(
            External::Redis,
            fired,
            format!(
                "restarted Redis at {} (SHUTDOWN NOSAVE, redis-server with the settings it ran with): run_id {} -> {}",
                r.at,
                r.run_id_before.get(..8).unwrap_or(&r.run_id_before),
                r.run_id_after.get(..8).unwrap_or(&r.run_id_after)
            ),
        );
    }
    if !skip(External::Postgres) {
        wait_for(at(0.55)).await;
        let n = inject::terminate_backends(iso).await?;
        injected.record(
            External::Postgres,
            usize::try_from(n).unwrap_or(0),
            format!(
                "terminated {n} Postgres backends of {} (pg_terminate_backend)",
                iso.db_name
            ),
        );
    }
    if !skip(External::Kill) {
        wait_for(at(0.75)).await;
        let ours: BTreeSet<String> = queues.iter().map(|q| ctx.names.queue(q)).collect();
        let (evidence, sigkilled) =
            inject::kill_in_flight(runner, &cfg.vhost(), &ours, KILL_LOOK_BOUND).await?;
        let in_flight = in_flight_summary(&evidence, &cfg.prefix);
        let line = if in_flight.is_empty() {
            format!(
                "SIGKILLed the runner, not provably in flight ({} look(s) in {KILL_LOOK_BOUND:?} found no batch in flight); started it again",
                evidence.looks
            )
        } else {
            format!(
                "SIGKILLed the runner with a batch in flight ({in_flight}; seen with the runner stopped, look {}); started it again",
                evidence.looks
            )
        };
        injected.record(External::Kill, usize::from(sigkilled), line);
        injected.kill = Some(evidence);
        *runner = spawn_runner(env, log.clone()).await?;
        wait_healthy(http, base, Duration::from_secs(60)).await?;
    }

    Ok(injected)
}

/// `queue: batch of N taken, M unacknowledged`: per queue where the runner's log showed a
/// batch taken by its trigger and the broker counted deliveries unacknowledged.
fn in_flight_summary(evidence: &KillEvidence, prefix: &str) -> String {
    evidence
        .in_flight()
        .iter()
        .map(|(q, (batch, unacked))| {
            format!(
                "{}: batch of {batch} taken, {unacked} unacknowledged",
                q.trim_start_matches(prefix)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until every placed order is final and queues and outboxes are empty (or the bound
/// passes: the verdicts then name what did not settle).
async fn settle(
    ctx: &shared::context::Context,
    queues: &[String],
    placed: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_BOUND;
    loop {
        // The checker's own connections suffer the faults too: an error here is retried.
        match settle_state(ctx, queues).await {
            Ok((total, pending, busy)) if pending == 0 && busy == 0 && total >= placed => {
                break;
            }
            Ok((_, pending, busy)) if Instant::now() > deadline => {
                println!(
                    "not settled after {SETTLE_BOUND:?}: {pending} orders pending, {busy} messages or outbox rows waiting"
                );
                break;
            }
            Err(e) if Instant::now() > deadline => {
                return Err(e.context("checking whether the run settled"));
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Nothing ready, in flight or unpublished for longer than the broker's statistics lag;
    // if it never gets there, verify's checks say what is still moving.
    if let Err(e) = crate::broker::settled(ctx, queues, Duration::from_secs(60)).await {
        println!("{e:#}");
    }
    Ok(())
}
