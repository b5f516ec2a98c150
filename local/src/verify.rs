//! `orderflow verify`: the invariants of DESIGN.md section 2, one line each.

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use shared::context::Context;
use shared::topology::parked;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub violations: Vec<String>,
    pub summary: String,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn line(&self) -> String {
        let mark = if self.ok() { "ok  " } else { "FAIL" };
        let mut s = format!("{mark} {}: {}", self.name, self.summary);
        for v in self.violations.iter().take(10) {
            s.push_str(&format!("\n       - {v}"));
        }
        if self.violations.len() > 10 {
            s.push_str(&format!(
                "\n       ... and {} more",
                self.violations.len() - 10
            ));
        }
        s
    }
}

/// Runs every check; `queues` are the template's queue names (unprefixed).
pub async fn run(ctx: &Context, queues: &[String]) -> anyhow::Result<Vec<Check>> {
    let orders = order::orders(&ctx.pool).await?;
    let by_id: BTreeMap<String, &order::OrderRow> =
        orders.iter().map(|o| (o.order_id.to_string(), o)).collect();
    let mut checks = Vec::new();

    // 1. Every order final.
    let pending: Vec<String> = orders
        .iter()
        .filter(|o| o.status == "PENDING")
        .map(|o| o.order_id.to_string())
        .collect();
    let confirmed = orders.iter().filter(|o| o.status == "CONFIRMED").count();
    checks.push(Check {
        name: "every order is CONFIRMED or CANCELLED",
        summary: format!(
            "{} orders, {confirmed} confirmed, {} cancelled, {} pending",
            orders.len(),
            orders.len() - confirmed - pending.len(),
            pending.len()
        ),
        violations: pending
            .iter()
            .map(|id| format!("order {id} is still PENDING"))
            .collect(),
    });

    // 2. Stock conserved, never negative, reservations held exactly by confirmed orders.
    let levels = inventory::stock_levels(&ctx.pool).await?;
    let reserved = inventory::reserved_quantities(&ctx.pool).await?;
    let mut held: BTreeMap<&str, i64> = BTreeMap::new();
    let mut reserved_orders: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for (order_id, product, qty) in &reserved {
        *held.entry(product.as_str()).or_default() += qty;
        *reserved_orders
            .entry(order_id.as_str())
            .or_default()
            .entry(product.as_str())
            .or_default() += qty;
    }
    let mut v = Vec::new();
    for l in &levels {
        let h = held.get(l.product_id.as_str()).copied().unwrap_or(0);
        if l.available < 0 {
            v.push(format!(
                "{}: available {} is negative",
                l.product_id, l.available
            ));
        }
        if l.initial != l.available + h {
            v.push(format!(
                "{}: initial {} != available {} + reserved by orders {h}",
                l.product_id, l.initial, l.available
            ));
        }
    }
    for o in orders.iter().filter(|o| o.status != "PENDING") {
        let id = o.order_id.to_string();
        let res = reserved_orders.get(id.as_str());
        let mut want: BTreeMap<&str, i64> = BTreeMap::new();
        for (p, q) in &o.items {
            *want.entry(p.as_str()).or_default() += q;
        }
        match (o.status.as_str(), res) {
            ("CONFIRMED", Some(r)) if *r == want => {}
            ("CONFIRMED", Some(r)) => v.push(format!(
                "order {id} is CONFIRMED but holds {r:?}, not {want:?}"
            )),
            ("CONFIRMED", None) => v.push(format!(
                "order {id} is CONFIRMED without a stock reservation"
            )),
            (_, Some(_)) => v.push(format!("order {id} is CANCELLED but still holds stock")),
            _ => {}
        }
    }
    for id in reserved_orders.keys() {
        if !by_id.contains_key(*id) {
            v.push(format!("stock held for unknown order {id}"));
        }
    }
    checks.push(Check {
        name: "stock conserved (initial = available + confirmed), never negative",
        summary: format!(
            "{} products, {} units held by confirmed orders",
            levels.len(),
            held.values().sum::<i64>()
        ),
        violations: v,
    });

    // 3. Money: one capture of the total per confirmed order, none for cancelled ones.
    let payments = payment::payments(&ctx.pool).await?;
    let pay: BTreeMap<&str, &payment::PaymentRow> =
        payments.iter().map(|p| (p.order_id.as_str(), p)).collect();
    let mut v = Vec::new();
    let mut captured = 0i64;
    for o in orders.iter().filter(|o| o.status != "PENDING") {
        let id = o.order_id.to_string();
        match (o.status.as_str(), pay.get(id.as_str())) {
            ("CONFIRMED", Some(p)) if p.status == "captured" && p.amount_cents == o.total_cents => {
                captured += p.amount_cents
            }
            ("CONFIRMED", Some(p)) => v.push(format!(
                "order {id} CONFIRMED but payment is {} of {} (total {})",
                p.status, p.amount_cents, o.total_cents
            )),
            ("CONFIRMED", None) => v.push(format!("order {id} CONFIRMED without a payment")),
            (_, Some(p)) if p.status == "captured" => v.push(format!(
                "order {id} CANCELLED but {} was captured",
                p.amount_cents
            )),
            _ => {}
        }
    }
    checks.push(Check {
        name: "one capture of the total per confirmed order, no money kept for cancelled ones",
        summary: format!(
            "{} payments, {captured} minor units captured",
            payments.len()
        ),
        violations: v,
    });

    // 4. Notifications: exactly one per order and kind, the final kind present.
    let counts = notification::notification_counts(&ctx.pool).await?;
    let mut kinds: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut v = Vec::new();
    for (order_id, kind, n) in &counts {
        if *n != 1 {
            v.push(format!(
                "order {order_id}: {n} notifications of kind {kind}"
            ));
        }
        kinds
            .entry(order_id.as_str())
            .or_default()
            .insert(kind.as_str());
    }
    for o in orders.iter().filter(|o| o.status != "PENDING") {
        let id = o.order_id.to_string();
        let (want, not) = if o.status == "CONFIRMED" {
            ("order_confirmed", "order_cancelled")
        } else {
            ("order_cancelled", "order_confirmed")
        };
        let k = kinds.get(id.as_str());
        if !k.is_some_and(|k| k.contains(want)) {
            v.push(format!(
                "order {id} is {} but has no {want} notification",
                o.status
            ));
        }
        if k.is_some_and(|k| k.contains(not)) {
            v.push(format!("order {id} is {} but was notified {not}", o.status));
        }
    }
    checks.push(Check {
        name: "exactly one notification per order and final state",
        summary: format!("{} notifications", counts.iter().map(|c| c.2).sum::<i64>()),
        violations: v,
    });

    // 5. Nothing lost: outboxes drained, dead letters only with a reason.
    let mut v = Vec::new();
    let mut unpublished = 0;
    for schema in crate::registry::OUTBOX_SCHEMAS {
        let (n, age) = shared::db::outbox_backlog(&ctx.pool, schema).await?;
        unpublished += n;
        if n > 0 {
            v.push(format!(
                "{schema}: {n} outbox rows unpublished, oldest {age:.1} s"
            ));
        }
    }
    let (dead, unexplained) = dead_letters(ctx, queues).await?;
    for (queue, n) in &unexplained {
        v.push(format!(
            "{queue}: {n} dead letters without a reason (not invalid input)"
        ));
    }
    checks.push(Check {
        name: "no event lost (outboxes published, dead letters only for invalid input)",
        summary: format!(
            "{unpublished} unpublished, {} dead letters ({} with a reason)",
            dead,
            dead - unexplained.values().sum::<usize>()
        ),
        violations: v,
    });

    // 6. Cache agrees with Postgres.
    let v = inventory::cache_disagreements(ctx).await?;
    checks.push(Check {
        name: "Redis stock cache agrees with Postgres",
        summary: format!("{} products compared", levels.len()),
        violations: v,
    });
    Ok(checks)
}

/// Total dead letters and, per queue, those without our reason header (broker
/// dead-lettered after the delivery limit: not invalid input, so a violation).
async fn dead_letters(
    ctx: &Context,
    queues: &[String],
) -> anyhow::Result<(usize, BTreeMap<String, usize>)> {
    let conn = shared::publisher::connect(&ctx.config.amqp_url, "verify").await?;
    let ch = conn.create_channel().await?;
    let mut total = 0;
    let mut unexplained = BTreeMap::new();
    for q in queues {
        let dlq = ctx.names.dead_letter_queue(q);
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let Ok(state) = ch
            .queue_declare(dlq.as_str().into(), passive, FieldTable::default())
            .await
        else {
            continue;
        };
        let n = state.message_count() as usize;
        total += n;
        // Peek without acking: closing the channel returns them all to the queue.
        let mut missing = 0;
        for _ in 0..n {
            match ch
                .basic_get(dlq.as_str().into(), BasicGetOptions::default())
                .await?
            {
                Some(msg) => {
                    let has_reason =
                        msg.delivery.properties.headers().as_ref().is_some_and(|h| {
                            h.inner().keys().any(|k| k.as_str() == parked::REASON)
                        });
                    if !has_reason {
                        missing += 1;
                    }
                }
                None => break,
            }
        }
        if missing > 0 {
            unexplained.insert(q.clone(), missing);
        }
    }
    let _ = ch.close(200, "verify done".into()).await;
    let _ = conn.close(200, "verify done".into()).await;
    Ok((total, unexplained))
}

/// Messages ready in every function queue: zero means the system is quiet.
pub async fn backlog(ctx: &Context, queues: &[String]) -> anyhow::Result<usize> {
    let conn = shared::publisher::connect(&ctx.config.amqp_url, "backlog").await?;
    let ch = conn.create_channel().await?;
    let mut total = 0;
    for q in queues {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let state = ch
            .queue_declare(
                ctx.names.queue(q).as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await?;
        total += state.message_count() as usize;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(total)
}
