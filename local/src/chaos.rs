//! `orderflow chaos`: the fault-injection suite. It starts the runner as a child process
//! (faults switched on in its configuration), places orders over HTTP while it closes every
//! broker connection, restarts Redis, terminates the Postgres backends and SIGKILLs the
//! runner mid-batch (then starts it again), waits for every order to settle and checks the
//! invariants. Everything runs in a fresh database and a fresh name prefix.

use crate::child::{post_retrying, shell, spawn_runner, wait_healthy};
use anyhow::Context as _;
use futures::StreamExt as _;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct ChaosArgs {
    /// Orders to place.
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
    /// External faults to skip: any of broker, redis, postgres, kill.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Keep the run's database and broker objects afterwards.
    #[arg(long)]
    pub keep: bool,
}

const REDIS_START: &[&str] = &[
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
];

/// (orders, of which pending, messages and outbox rows still waiting).
async fn settle_state(
    ctx: &shared::context::Context,
    queues: &[String],
) -> anyhow::Result<(usize, usize, usize)> {
    let orders = order::orders(&ctx.pool).await?;
    let pending = orders.iter().filter(|o| o.status == "PENDING").count();
    let mut busy = crate::verify::backlog(ctx, queues).await?;
    for schema in crate::registry::OUTBOX_SCHEMAS {
        busy += shared::db::outbox_backlog(&ctx.pool, schema).await?.0 as usize;
    }
    Ok((orders.len(), pending, busy))
}

pub async fn run(
    base_cfg: shared::Config,
    queues: &[String],
    args: ChaosArgs,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let faults = args.faults.clone();
    let iso = crate::child::isolate(
        &base_cfg,
        "chaos",
        &run_id,
        &[
            ("ORDERFLOW_FAULTS", &faults),
            ("ORDERFLOW_SCHEDULE_EVERY_SECS", "1"),
        ],
    )?;
    let (cfg, db_url, env, base) = (
        iso.cfg.clone(),
        iso.db_url.clone(),
        iso.env.clone(),
        iso.base.clone(),
    );
    println!(
        "chaos run {run_id}: {} orders at {}/s, runner faults {:?}, database {}",
        args.orders,
        args.rate,
        args.faults,
        db_url.path()
    );

    let specs = crate::template::parse(crate::template::EMBEDDED)?;
    crate::stack::prepare(&cfg, &specs).await?;
    let ctx = shared::context::Context::new(cfg.clone())?;
    let fault_counts = Arc::new(Mutex::new(BTreeMap::new()));
    let mut runner = spawn_runner(&env, fault_counts.clone()).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    wait_healthy(&http, &base, Duration::from_secs(60)).await?;
    crate::seed::seed(
        &ctx,
        &crate::seed::demo_catalog(),
        Some(Duration::from_secs(60)),
    )
    .await?;

    // Sessions live in Redis, which keeps nothing on disk here: after the Redis restart
    // every token is dead and clients log in again, as real ones would.
    let mut users = Vec::new();
    for i in 0..10 {
        let creds = json!({"email": format!("chaos-{run_id}-{i}@example.com"), "password": "correct horse battery"});
        post_retrying(&http, &format!("{base}/users"), None, None, &creds).await?;
        users.push(creds);
    }
    let users = Arc::new(users);
    let tokens: Arc<tokio::sync::Mutex<BTreeMap<usize, String>>> = Arc::default();
    let relogins = Arc::new(AtomicUsize::new(0));

    // Place orders at the given rate; faults are injected at milestones of progress.
    let accepted = Arc::new(AtomicUsize::new(0));
    let placer = {
        let (http, base, users, tokens, accepted, run_id, relogins) = (
            http.clone(),
            base.clone(),
            users.clone(),
            tokens.clone(),
            accepted.clone(),
            run_id.clone(),
            relogins.clone(),
        );
        let (n, rate) = (args.orders, args.rate.max(1.0));
        tokio::spawn(async move {
            let tick = Duration::from_secs_f64(1.0 / rate);
            futures::stream::iter(0..n)
                .map(|i| {
                    let (http, base, users, tokens, accepted, run_id, relogins) = (
                        http.clone(),
                        base.clone(),
                        users.clone(),
                        tokens.clone(),
                        accepted.clone(),
                        run_id.clone(),
                        relogins.clone(),
                    );
                    async move {
                        tokio::time::sleep(tick * i as u32).await;
                        let card = if i % 10 == 7 {
                            "tok_chargeDeclined"
                        } else {
                            "tok_visa"
                        };
                        let product = ["sku-coffee", "sku-mug", "sku-grinder", "sku-kettle"][i % 4];
                        let mut items = vec![json!({"product_id": product, "quantity": 1 + i % 3})];
                        if i % 5 == 1 {
                            items.push(json!({"product_id": "sku-limited", "quantity": 1}));
                        }
                        let body = json!({"items": items, "payment_token": card});
                        let key = format!("chaos-{run_id}-{i}");
                        let user = i % users.len();
                        let result = async {
                            for _ in 0..20 {
                                let token = {
                                    let mut t = tokens.lock().await;
                                    match t.get(&user) {
                                        Some(tok) => tok.clone(),
                                        None => {
                                            let (s, b) = post_retrying(
                                                &http,
                                                &format!("{base}/sessions"),
                                                None,
                                                None,
                                                &users[user],
                                            )
                                            .await?;
                                            anyhow::ensure!(s == 201, "login answered {s}: {b}");
                                            let tok =
                                                b["token"].as_str().context("token")?.to_string();
                                            t.insert(user, tok.clone());
                                            tok
                                        }
                                    }
                                };
                                let (s, b) = post_retrying(
                                    &http,
                                    &format!("{base}/orders"),
                                    Some(&token),
                                    Some(&key),
                                    &body,
                                )
                                .await?;
                                if s == 401 {
                                    relogins.fetch_add(1, Ordering::SeqCst);
                                    let mut t = tokens.lock().await;
                                    if t.get(&user) == Some(&token) {
                                        t.remove(&user);
                                    }
                                    continue;
                                }
                                anyhow::ensure!(s == 202, "order {i} answered {s}: {b}");
                                return b["order_id"]
                                    .as_str()
                                    .map(str::to_string)
                                    .context("no order_id");
                            }
                            anyhow::bail!(
                                "order {i}: still unauthorized after logging in again 20 times"
                            )
                        }
                        .await;
                        accepted.fetch_add(1, Ordering::SeqCst);
                        result
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<_>>()
                .await
        })
    };

    let mut injected: Vec<String> = Vec::new();
    let at = |fraction: f64| (args.orders as f64 * fraction) as usize;
    let wait_for = |n: usize| {
        let accepted = accepted.clone();
        async move {
            while accepted.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let skip = |k: &str| args.skip.iter().any(|s| s == k);
    if !skip("broker") {
        wait_for(at(0.15)).await;
        shell(
            "rabbitmqctl",
            &["-q", "close_all_connections", "chaos: injected"],
        )
        .await?;
        injected.push("closed all broker connections (rabbitmqctl close_all_connections)".into());
        println!("injected: closed all broker connections");
    }
    if !skip("redis") {
        wait_for(at(0.35)).await;
        let _ = shell("redis-cli", &["-p", "6379", "shutdown", "nosave"]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        shell("redis-server", REDIS_START).await?;
        injected.push("restarted Redis (shutdown nosave, start)".into());
        println!("injected: restarted Redis");
    }
    if !skip("postgres") {
        wait_for(at(0.55)).await;
        let db = db_url.path().trim_start_matches('/').to_string();
        let killed = shell(
            "psql",
            &["-h", "127.0.0.1", "-U", "postgres", "-Atc", &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"), "postgres"],
        )
        .await?;
        injected.push(format!(
            "terminated {killed} Postgres backends (pg_terminate_backend)"
        ));
        println!("injected: terminated {killed} Postgres backends");
    }
    if !skip("kill") {
        wait_for(at(0.75)).await;
        runner.child.start_kill()?;
        let _ = runner.child.wait().await;
        injected.push("killed the runner with SIGKILL mid-batch and started it again".into());
        println!("injected: SIGKILL of the runner; restarting it");
        runner = spawn_runner(&env, runner.faults.clone()).await?;
        wait_healthy(&http, &base, Duration::from_secs(60)).await?;
    }

    let placed = placer.await?;
    let order_ids: Vec<String> = placed.into_iter().collect::<anyhow::Result<_>>()?;
    println!(
        "placed {} orders in {:.1} s; waiting for them to settle",
        order_ids.len(),
        started.elapsed().as_secs_f64()
    );

    // Settle: every order final, queues and outboxes empty.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        // The checker's own connections suffer the faults too: an error here is retried.
        match settle_state(&ctx, queues).await {
            Ok((total, pending, busy)) if pending == 0 && busy == 0 && total >= order_ids.len() => {
                break;
            }
            Ok((_, pending, busy)) if Instant::now() > deadline => {
                println!(
                    "not settled after 240 s: {pending} orders pending, {busy} messages or outbox rows waiting"
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
    // Twice in a row quiet, so nothing is mid-flight between the checks.
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if crate::verify::backlog(&ctx, queues).await.unwrap_or(1) == 0 {
                break;
            }
        }
    })
    .await;

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
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for o in &orders {
        *states
            .entry(match &o.reason {
                Some(r) => format!("{} ({r})", o.status),
                None => o.status.clone(),
            })
            .or_default() += 1;
    }
    let ok = checks.iter().all(crate::verify::Check::ok) && orders.len() == order_ids.len();

    crate::child::stop(&mut runner).await;

    println!();
    println!("== chaos run {run_id} ==");
    println!(
        "orders: {} accepted, {} in the database",
        order_ids.len(),
        orders.len()
    );
    for (state, n) in &states {
        println!("  {state:<30} {n}");
    }
    println!("faults injected:");
    for line in &injected {
        println!("  {line}");
    }
    let counts = fault_counts.lock().map(|m| m.clone()).unwrap_or_default();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (k, n) in &counts {
        *by_kind
            .entry(k.split(' ').next().unwrap_or("?").to_string())
            .or_default() += n;
    }
    for (kind, n) in &by_kind {
        println!("  {n} x {kind} (in-process, by ORDERFLOW_FAULTS)");
    }
    println!(
        "  {} order requests logged in again after their session died with Redis",
        relogins.load(Ordering::SeqCst)
    );
    println!("invariants:");
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
            db_url.path(),
            cfg.prefix
        );
    }
    Ok(ok)
}
