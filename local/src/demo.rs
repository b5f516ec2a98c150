//! `orderflow demo`: the whole system in one process, seeded, with users placing orders
//! over the real HTTP front door; then the life after the decision (`crate::demo_after`:
//! a cancel, refunds, a shipment); ends with a summary and the invariant check.

use crate::stack::Stack;
use anyhow::Context as _;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
struct Placed {
    order: crate::outcomes::Placed,
    accepted_at: Instant,
    user: usize,
}

/// What an order ended as, and how long after its 202 that was seen.
struct Final {
    status: String,
    reason: Option<String>,
    latency: Duration,
}

pub struct DemoOutcome {
    pub ok: bool,
    pub orders: usize,
}

fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

pub async fn run(stack: &Stack, n_orders: usize, queues: &[String]) -> anyhow::Result<DemoOutcome> {
    let base = format!("http://{}", stack.http_addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let catalog = crate::seed::demo_catalog();
    crate::seed::seed(&stack.ctx, &catalog, Some(Duration::from_secs(30))).await?;
    println!(
        "seeded {} products (sku-limited has {} units)",
        catalog.len(),
        catalog
            .iter()
            .find(|p| p.product_id == "sku-limited")
            .map_or(0, |p| p.stock)
    );

    // Users: register and log in through the API.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let n_users = n_orders.div_ceil(20).max(1);
    let mut tokens = Vec::with_capacity(n_users);
    for i in 0..n_users {
        let creds = json!({"email": format!("demo-{}-{i}@example.com", &run_id[..8]), "password": "correct horse battery"});
        let r = http
            .post(format!("{base}/users"))
            .json(&creds)
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 201,
            "register answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        let r = http
            .post(format!("{base}/sessions"))
            .json(&creds)
            .send()
            .await?;
        let body: Value = r.json().await?;
        tokens.push(
            body["token"]
                .as_str()
                .context("login gave no token")?
                .to_string(),
        );
    }
    println!("registered {n_users} users");

    // Orders: a deterministic mix of cards and baskets.
    let pb = bar(n_orders as u64, "placing");
    let started = Instant::now();
    let placed: Vec<anyhow::Result<Placed>> = futures::stream::iter(0..n_orders)
        .map(|i| {
            let (http, base, pb) = (http.clone(), base.clone(), pb.clone());
            let user = i % n_users;
            let bearer = tokens[user].clone();
            let run_id = run_id.clone();
            async move {
                let token = match i % 10 {
                    7 => "tok_chargeDeclined",
                    8 => "tok_chargeDeclinedInsufficientFunds",
                    _ => "tok_visa",
                };
                let product = ["sku-coffee", "sku-mug", "sku-grinder", "sku-kettle"][i % 4];
                let mut lines = vec![(product.to_string(), 1 + (i % 3) as i64)];
                if i % 4 == 1 {
                    lines.push(("sku-limited".to_string(), 1));
                }
                let items: Vec<Value> = lines
                    .iter()
                    .map(|(p, q)| json!({"product_id": p, "quantity": q}))
                    .collect();
                let r = http
                    .post(format!("{base}/orders"))
                    .bearer_auth(&bearer)
                    .header("idempotency-key", format!("demo-{run_id}-{i}"))
                    .json(&json!({"items": items, "payment_token": token}))
                    .send()
                    .await?;
                let status = r.status();
                let body: Value = r.json().await?;
                anyhow::ensure!(
                    status.as_u16() == 202,
                    "order {i} answered {status}: {body}"
                );
                pb.inc(1);
                Ok(Placed {
                    order: crate::outcomes::Placed {
                        order_id: body["order_id"]
                            .as_str()
                            .context("no order_id")?
                            .to_string(),
                        inputs: crate::outcomes::Inputs {
                            payment_token: token.to_string(),
                            items: lines,
                        },
                    },
                    accepted_at: Instant::now(),
                    user,
                })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    pb.finish();
    let placed: Vec<Placed> = placed.into_iter().collect::<anyhow::Result<_>>()?;
    let place_secs = started.elapsed().as_secs_f64();

    // Follow every order over GET /orders/{id} until it is final.
    let pb = bar(n_orders as u64, "final");
    let mut finals: BTreeMap<String, Final> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while finals.len() < placed.len() && Instant::now() < deadline {
        let todo: Vec<&Placed> = placed
            .iter()
            .filter(|p| !finals.contains_key(&p.order.order_id))
            .collect();
        let seen: Vec<Option<(String, Final)>> = futures::stream::iter(todo)
            .map(|p| {
                let (http, base, bearer) = (http.clone(), base.clone(), tokens[p.user].clone());
                async move {
                    let r = http
                        .get(format!("{base}/orders/{}", p.order.order_id))
                        .bearer_auth(bearer)
                        .send()
                        .await
                        .ok()?;
                    let body: Value = r.json().await.ok()?;
                    let status = body["status"].as_str()?.to_string();
                    (status != "PENDING").then(|| {
                        let reason = body["reason"].as_str().map(str::to_string);
                        (
                            p.order.order_id.clone(),
                            Final {
                                status,
                                reason,
                                latency: p.accepted_at.elapsed(),
                            },
                        )
                    })
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (id, fin) in seen.into_iter().flatten() {
            finals.insert(id, fin);
            pb.inc(1);
        }
        if finals.len() < placed.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    pb.finish();
    let total_secs = started.elapsed().as_secs_f64();

    // Outcomes as the inputs imply (see `crate::outcomes`), and every class the inputs
    // make certain seen at least once.
    let orders: Vec<crate::outcomes::Placed> = placed.iter().map(|p| p.order.clone()).collect();
    let stock: BTreeMap<String, i64> = catalog
        .iter()
        .map(|p| (p.product_id.clone(), i64::from(p.stock)))
        .collect();
    let seen: BTreeMap<String, crate::outcomes::Final> = finals
        .iter()
        .map(|(id, f)| {
            (
                id.clone(),
                crate::outcomes::Final {
                    status: f.status.clone(),
                    reason: f.reason.clone(),
                },
            )
        })
        .collect();
    let outcomes = crate::outcomes::check(
        &orders,
        &stock,
        &seen,
        &crate::outcomes::guaranteed(orders.iter().map(|p| &p.inputs), &stock),
    );

    // Second act: cancel, refunds, shipment, on orders the first act confirmed.
    let confirmed: Vec<crate::demo_after::Confirmed> = placed
        .iter()
        .filter(|p| {
            finals
                .get(&p.order.order_id)
                .is_some_and(|f| f.status == "CONFIRMED")
        })
        .take(4)
        .map(|p| crate::demo_after::Confirmed {
            order_id: p.order.order_id.clone(),
            token: tokens[p.user].clone(),
        })
        .collect();
    let act = crate::demo_after::run(stack, &http, &run_id, &confirmed, &tokens[0]).await?;
    let refunds =
        crate::demo_after::wait_refunds(&http, &base, &act.refunded, Duration::from_secs(30))
            .await?;

    wait_quiet(stack, queues, Duration::from_secs(30)).await?;
    let mut latencies: Vec<f64> = finals
        .values()
        .map(|f| f.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };

    println!();
    println!("┌─────────────────────────────────────────┬────────┐");
    println!("│ final state                             │ orders │");
    println!("├─────────────────────────────────────────┼────────┤");
    for (label, n) in &outcomes.states {
        println!("│ {label:<39} │ {n:>6} │");
    }
    let missing = placed.len() - finals.len();
    if missing > 0 {
        println!("│ {:<39} │ {missing:>6} │", "not final after 120 s");
    }
    println!("└─────────────────────────────────────────┴────────┘");
    let levels = inventory::stock_levels(&stack.ctx.pool).await?;
    let stock: Vec<String> = levels
        .iter()
        .map(|l| format!("{} {}/{}", l.product_id, l.available, l.initial))
        .collect();
    println!("stock (available/initial): {}", stock.join(", "));
    let payments = payment::payments(&stack.ctx.pool).await?;
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &payments {
        *by_status.entry(p.status.as_str()).or_default() += 1;
    }
    println!("payments: {by_status:?}");
    let notes: i64 = notification::notification_counts(&stack.ctx.pool)
        .await?
        .iter()
        .map(|c| c.2)
        .sum();
    println!("notifications: {notes}");
    println!(
        "placed {} orders in {place_secs:.2} s, all final after {total_secs:.2} s; accept-to-final latency p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms (observed by polling every 50 ms)",
        placed.len(),
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
    if let Some((id, _)) = finals
        .iter()
        .find(|(_, f)| f.reason.as_deref() == Some("payment_declined"))
    {
        println!("follow a declined order across the services: orderflow timeline {id}");
    }
    println!("{}", outcomes.line());
    println!();
    println!("after the decision (HTTP calls and their answers):");
    for line in act.lines.iter().chain(&refunds) {
        println!("  {line}");
    }
    println!();
    let checks = crate::verify::run(&stack.ctx, queues, &crate::verify::Expect::default()).await?;
    for c in &checks {
        println!("{}", c.line());
    }
    let ok = missing == 0 && outcomes.ok() && checks.iter().all(crate::verify::Check::ok);
    Ok(DemoOutcome {
        ok,
        orders: placed.len(),
    })
}

/// Waits until nothing is ready, in flight or unpublished (see `crate::broker::settled`).
pub async fn wait_quiet(stack: &Stack, queues: &[String], limit: Duration) -> anyhow::Result<()> {
    wait_quiet_ctx(&stack.ctx, queues, limit).await
}

/// Same, for any context (a runner in another process included).
pub async fn wait_quiet_ctx(
    ctx: &shared::context::Context,
    queues: &[String],
    limit: Duration,
) -> anyhow::Result<()> {
    crate::broker::settled(ctx, queues, limit).await
}
