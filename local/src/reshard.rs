//! `orderflow reshard FN=N` and `orderflow topology --prune`: changing a function's shard
//! count on a live broker without losing or duplicating an event.
//!
//! The order of steps is the point. Routes are only ever added before others are removed,
//! so no publish finds no route (publishes are mandatory: that would fail the publisher),
//! and no message is routed to two queues of one function: while the plain queue moves
//! behind the hash exchange (1 -> N) or back (N -> 1), it is reachable by two paths at once,
//! and RabbitMQ delivers one copy per queue whatever the number of paths. Old queues are
//! left bound to nothing, drained by their consumers (the old deployment's event source
//! mappings, or the old runner), and deleted by `topology --prune` only once they are empty
//! with nothing unacknowledged.
//!
//! While a change is under way, an order whose key moves to another shard can have an older
//! event still waiting in its old queue: per-order ordering holds in steady state, not across
//! the change. The consumers do not rely on it (the saga decides the same whatever the order
//! of its inputs, and compensations leave tombstones), which is why the change is safe.

use crate::broker::Probe;
use crate::template::{self, FunctionSpec};
use anyhow::Context as _;
use lapin::Channel;
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, ExchangeUnbindOptions,
    QueueBindOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use shared::context::Context;
use shared::topology::{self, Names, QueueSpec};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct ReshardArgs {
    /// FUNCTION=SHARDS (binary or logical id as in template.yaml), e.g. inventory-reserve=4;
    /// the current count is the template's (`--template`, the one the system runs with).
    #[arg(required = true)]
    pub changes: Vec<String>,
    /// Do not wait for the old queues to drain (they still must, before `topology --prune`).
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the old queues to drain, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// One change of one function: its routing and the shard counts before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub spec: QueueSpec,
    pub to: usize,
}

impl Change {
    /// Broker queues (unprefixed) that the change leaves without a route.
    pub fn retired(&self) -> Vec<String> {
        let keep = topology::shard_queues(&self.spec.queue, self.to);
        self.spec
            .broker_queues()
            .into_iter()
            .filter(|q| !keep.contains(q))
            .collect()
    }
}

/// The changes `FN=N` arguments ask for, against the template's current counts.
pub fn changes(specs: &[FunctionSpec], args: &[String]) -> anyhow::Result<Vec<Change>> {
    let queue_specs = template::queue_specs(specs);
    let mut out = Vec::new();
    for a in args {
        let (name, to) = template::parse_shard_change(a)?;
        anyhow::ensure!(
            (1..=template::MAX_SHARDS).contains(&to),
            "{a}: shards must be 1..={}",
            template::MAX_SHARDS
        );
        let picked: Vec<&FunctionSpec> = specs
            .iter()
            .filter(|f| name == "all" || f.binary == name || f.logical_id == name)
            .collect();
        anyhow::ensure!(!picked.is_empty(), "{name}: no function of that name");
        for f in picked {
            for t in &f.triggers {
                if let template::Trigger::Mq { queue, .. } = t {
                    let spec = queue_specs
                        .iter()
                        .find(|q| q.queue == *queue)
                        .context("queue spec")?;
                    out.push(Change {
                        spec: spec.clone(),
                        to,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Re-routes one function's events to its new shard queues (declared first) and unbinds the
/// old ones, in the order the module comment explains. Idempotent: a step already done is
/// done again harmlessly, so an interrupted change is finished by running it again.
pub async fn reroute(ch: &Channel, names: &Names, change: &Change) -> anyhow::Result<()> {
    let spec = &change.spec;
    let from = spec.shards;
    let to = change.to;
    let stem = &spec.queue;
    let events = names.events_exchange();
    let hash = names.shard_exchange(stem);
    let plain = names.queue(stem);
    if from == to {
        return Ok(());
    }
    // 1. The hash exchange exists and takes the function's events.
    ch.exchange_declare(
        hash.as_str().into(),
        lapin::ExchangeKind::Custom(topology::CONSISTENT_HASH.into()),
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        topology::shard_exchange_args(),
    )
    .await?;
    if from == 1 {
        // The plain queue goes behind the hash exchange before losing its direct binding.
        bind_queue(ch, &plain, &hash, topology::SHARD_WEIGHT).await?;
    }
    for key in &spec.routing_keys {
        ch.exchange_bind(
            hash.as_str().into(),
            events.as_str().into(),
            key.as_str().into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    if from == 1 {
        for key in &spec.routing_keys {
            ch.queue_unbind(
                plain.as_str().into(),
                events.as_str().into(),
                key.as_str().into(),
                FieldTable::default(),
            )
            .await?;
        }
    }
    // 2. The new queues (with their dead-letter queues and bindings) take their share.
    for q in topology::shard_queues(stem, to) {
        topology::declare_queue(ch, names, &q).await?;
        bind_queue(ch, &names.queue(&q), &hash, topology::SHARD_WEIGHT).await?;
    }
    // 3. The old queues stop receiving.
    for q in change.retired() {
        ch.queue_unbind(
            names.queue(&q).as_str().into(),
            hash.as_str().into(),
            topology::SHARD_WEIGHT.into(),
            FieldTable::default(),
        )
        .await?;
    }
    // 4. Back to one shard: the plain queue is bound directly again, and the hash exchange
    //    (bound to nothing by now but the plain queue) goes.
    if to == 1 {
        for key in &spec.routing_keys {
            ch.queue_bind(
                plain.as_str().into(),
                events.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        unhook_hash_exchange(ch, names, spec).await?;
    }
    Ok(())
}

async fn bind_queue(ch: &Channel, queue: &str, exchange: &str, key: &str) -> anyhow::Result<()> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// Removes an unsharded function's hash exchange, once its queue has a direct binding.
async fn unhook_hash_exchange(ch: &Channel, names: &Names, spec: &QueueSpec) -> anyhow::Result<()> {
    let hash = names.shard_exchange(&spec.queue);
    for key in &spec.routing_keys {
        ch.exchange_unbind(
            hash.as_str().into(),
            names.events_exchange().as_str().into(),
            key.as_str().into(),
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    // Deleting the exchange removes its remaining bindings (the plain queue's) with it.
    ch.exchange_delete(hash.as_str().into(), ExchangeDeleteOptions::default())
        .await?;
    Ok(())
}

/// How a retired queue stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drain {
    /// Empty, nothing unacknowledged.
    Empty,
    Busy {
        ready: u64,
        unacked: u64,
    },
    /// Cannot be told (missing statistics): treated as busy.
    Unknown(String),
    Missing,
}

/// The state of the given prefixed queues.
pub async fn drain_state(probe: &Probe, queues: &[String]) -> Vec<(String, Drain)> {
    probe
        .queues(queues)
        .await
        .into_iter()
        .map(|p| {
            let d = match p.depth {
                Err(_) => Drain::Missing,
                Ok(d) => match d.unacked {
                    Err(e) => Drain::Unknown(e),
                    Ok(0) if d.ready == 0 => Drain::Empty,
                    Ok(unacked) => Drain::Busy {
                        ready: d.ready,
                        unacked,
                    },
                },
            };
            (p.queue, d)
        })
        .collect()
}

/// Waits until every given prefixed queue is empty with nothing unacknowledged, and has
/// stayed so longer than the management API's figures can lag.
pub async fn wait_drained(ctx: &Context, queues: &[String], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let window = crate::broker::stats_interval() + Duration::from_millis(200);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let probe = Probe::open(ctx).await?;
        let states = drain_state(&probe, queues).await;
        probe.close().await;
        let busy: Vec<&(String, Drain)> = states
            .iter()
            .filter(|(_, d)| !matches!(d, Drain::Empty | Drain::Missing))
            .collect();
        let now = Instant::now();
        if busy.is_empty() {
            if now.duration_since(*quiet_since.get_or_insert(now)) >= window {
                return Ok(());
            }
        } else {
            quiet_since = None;
        }
        anyhow::ensure!(
            now < deadline,
            "old shard queues did not drain within {limit:?}: {busy:?} (are their consumers running?)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Watches the given prefixed queues for longer than the management API's figures can lag
/// and gives each the worst state it showed (`Empty` only if it always read empty).
async fn watch_drained(ctx: &Context, queues: &[String]) -> anyhow::Result<Vec<(String, Drain)>> {
    let mut worst: Vec<(String, Drain)> =
        queues.iter().map(|q| (q.clone(), Drain::Missing)).collect();
    if queues.is_empty() {
        return Ok(worst);
    }
    let until = Instant::now() + crate::broker::stats_interval() + Duration::from_millis(200);
    loop {
        let probe = Probe::open(ctx).await?;
        for (i, (_, d)) in drain_state(&probe, queues).await.into_iter().enumerate() {
            let w = &mut worst[i].1;
            match (&*w, &d) {
                (_, Drain::Missing) => {}
                (Drain::Missing, _) | (Drain::Empty, _) => *w = d,
                _ => {}
            }
        }
        probe.close().await;
        if Instant::now() >= until {
            return Ok(worst);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `orderflow reshard`.
pub async fn run(ctx: &Context, specs: &[FunctionSpec], args: ReshardArgs) -> anyhow::Result<bool> {
    let changes = changes(specs, &args.changes)?;
    let conn = shared::publisher::connect(&ctx.config.amqp_url, "reshard").await?;
    let ch = conn.create_channel().await?;
    let mut retired = Vec::new();
    for c in &changes {
        reroute(&ch, &ctx.names, c)
            .await
            .with_context(|| format!("re-routing {} to {} shard(s)", c.spec.queue, c.to))?;
        println!(
            "{}: {} -> {} shard(s); routed to {:?}",
            c.spec.queue,
            c.spec.shards,
            c.to,
            topology::shard_queues(&c.spec.queue, c.to)
        );
        retired.extend(c.retired().iter().map(|q| ctx.names.queue(q)));
    }
    let _ = conn.close(200, "resharded".into()).await;
    if !retired.is_empty() && !args.no_wait {
        println!("waiting for {retired:?} to drain (their consumers must still run)");
        wait_drained(ctx, &retired, Duration::from_secs(args.timeout_secs)).await?;
        println!("drained: {retired:?}");
    }
    println!(
        "next: deploy (or restart `orderflow up` with) the template at the new shard counts \
         (`orderflow template --shards FN=N`), then `orderflow topology --prune`"
    );
    Ok(true)
}

/// What `topology --prune` found for one queue that the template no longer names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub queue: String,
    pub deleted: bool,
    pub why: String,
}

/// Deletes the queues of the template's functions that the template no longer names
/// (shards past N, the plain queue of a sharded function, shard queues of an unsharded one)
/// once they are unbound, empty and hold nothing unacknowledged; their dead-letter queues
/// too when empty (dead letters are never thrown away: replay them with the old template's
/// `dlq replay`, then prune again). With `force`, queues that hold messages go as well.
pub async fn prune(
    ctx: &Context,
    specs: &[FunctionSpec],
    force: bool,
) -> anyhow::Result<Vec<Pruned>> {
    prune_queues(ctx, &template::queue_specs(specs), force).await
}

/// `prune` for the given queue functions.
pub async fn prune_queues(
    ctx: &Context,
    specs: &[QueueSpec],
    force: bool,
) -> anyhow::Result<Vec<Pruned>> {
    let names = &ctx.names;
    let conn = shared::publisher::connect(&ctx.config.amqp_url, "prune").await?;
    // The template's routes exist before any other is removed.
    let ch = conn.create_channel().await?;
    topology::declare(&ch, names, specs).await?;
    let _ = ch.close(200, "declared".into()).await;
    // Unbinding from an exchange that does not exist closes the channel: one per step.
    let fresh = || async { conn.create_channel().await };
    let management = crate::broker::Management::from_config(&ctx.config)?;
    let existing = management
        .queue_names()
        .await
        .map_err(|e| anyhow::anyhow!("prune reads the broker's queues through it: {e}"))?;
    let mut out = Vec::new();
    let mut retired = Vec::new();
    for spec in specs.iter().cloned() {
        let live = spec.broker_queues();
        // Queues of this function at any shard count, live or not, that exist.
        let stale: Vec<String> = existing
            .iter()
            .filter_map(|q| q.strip_prefix(names.prefix.as_str()))
            .map(|q| q.strip_suffix(".dlq").unwrap_or(q))
            .filter(|q| topology::shard_stem(q) == spec.queue && !live.iter().any(|l| l == q))
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let hash_exists = management
            .exchange_exists(&names.shard_exchange(&spec.queue))
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        if spec.shards == 1 && hash_exists {
            // A finished N -> 1 change removed it already; one left by an interrupted change
            // goes now that the plain queue has its direct binding (declared above).
            let ch = fresh().await?;
            unhook_hash_exchange(&ch, names, &spec).await?;
            let _ = ch.close(200, "pruned".into()).await;
        }
        let hash_exists = hash_exists && spec.shards > 1;
        for q in stale {
            // Never delete a queue something still routes to: unbind it first.
            let unbound = if let Ok(ch) = fresh().await {
                let unbound = if q == spec.queue {
                    let mut ok = true;
                    for key in &spec.routing_keys {
                        ok &= ch
                            .queue_unbind(
                                names.queue(&q).as_str().into(),
                                names.events_exchange().as_str().into(),
                                key.as_str().into(),
                                FieldTable::default(),
                            )
                            .await
                            .is_ok();
                    }
                    ok
                } else if !hash_exists {
                    true
                } else {
                    ch.queue_unbind(
                        names.queue(&q).as_str().into(),
                        names.shard_exchange(&spec.queue).as_str().into(),
                        topology::SHARD_WEIGHT.into(),
                        FieldTable::default(),
                    )
                    .await
                    .is_ok()
                };
                if unbound {
                    let _ = ch.close(200, "unbound".into()).await;
                }
                unbound
            } else {
                false
            };
            if unbound {
                retired.push(q);
            } else {
                out.push(Pruned {
                    queue: names.queue(&q),
                    deleted: false,
                    why: "kept: could not be unbound".into(),
                });
            }
        }
    }
    // Unacknowledged counts come from the management API and lag: a queue is deleted only
    // if it read empty, with nothing unacknowledged, through a whole statistics interval
    // after it was unbound (a stale zero alone could hide a batch in flight).
    let watched: Vec<String> = retired
        .iter()
        .flat_map(|q| [names.queue(q), names.dead_letter_queue(q)])
        .collect();
    let verdicts = watch_drained(ctx, &watched).await?;
    let verdict = |name: &str| {
        verdicts
            .iter()
            .find(|(q, _)| q == name)
            .map_or(Drain::Missing, |(_, d)| d.clone())
    };
    for q in retired {
        let (deleted, why) = match (verdict(&names.queue(&q)), force) {
            (Drain::Empty | Drain::Missing, _) | (_, true) => {
                // Quorum queues refuse `if_empty` (a connection error), so the deletion is
                // unconditional: it comes only after the watch above, and the queue has had
                // no route since before it.
                let ch = fresh().await?;
                let gone = ch
                    .queue_delete(
                        names.queue(&q).as_str().into(),
                        QueueDeleteOptions::default(),
                    )
                    .await;
                match gone {
                    Err(e) => (false, format!("kept: the broker refused to delete it: {e}")),
                    Ok(_) => {
                        let dlq_kept = match (verdict(&names.dead_letter_queue(&q)), force) {
                            (Drain::Empty | Drain::Missing, _) | (_, true) => {
                                let ch = fresh().await?;
                                ch.queue_delete(
                                    names.dead_letter_queue(&q).as_str().into(),
                                    QueueDeleteOptions::default(),
                                )
                                .await
                                .ok();
                                String::new()
                            }
                            (other, false) => format!(
                                "; its dead-letter queue is kept ({other:?}): replay or discard \
                                 them with the old template's `orderflow dlq`, then prune again"
                            ),
                        };
                        (true, format!("deleted{dlq_kept}"))
                    }
                }
            }
            (other, false) => (false, format!("kept, not drained: {other:?}")),
        };
        out.push(Pruned {
            queue: names.queue(&q),
            deleted,
            why,
        });
    }
    let _ = conn.close(200, "pruned".into()).await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(from: usize, to: usize) -> Change {
        Change {
            spec: QueueSpec {
                queue: "f".into(),
                routing_keys: vec!["order.created".into()],
                shards: from,
            },
            to,
        }
    }

    #[test]
    fn a_change_retires_exactly_the_queues_the_new_count_does_not_name() {
        assert_eq!(change(1, 4).retired(), vec!["f"]);
        assert_eq!(change(4, 2).retired(), vec!["f.2", "f.3"]);
        assert_eq!(change(2, 4).retired(), Vec::<String>::new());
        assert_eq!(change(2, 1).retired(), vec!["f.0", "f.1"]);
        assert_eq!(change(3, 3).retired(), Vec::<String>::new());
    }

    #[test]
    fn changes_name_functions_by_binary_logical_id_or_all() {
        let specs = template::parse(template::EMBEDDED).expect("template");
        let by_binary = changes(&specs, &["order-saga=4".into()]).expect("by binary");
        assert_eq!(by_binary, vec![change_of(&specs, "order-saga", 4)]);
        let by_id = changes(&specs, &["OrderSagaFunction=4".into()]).expect("by id");
        assert_eq!(by_id, by_binary);
        let all = changes(&specs, &["all=2".into()]).expect("all");
        assert_eq!(all.len(), template::queue_specs(&specs).len());
        assert!(changes(&specs, &["nope=2".into()]).is_err());
        assert!(changes(&specs, &["order-saga=0".into()]).is_err());
        assert!(changes(&specs, &["order-saga".into()]).is_err());
    }

    fn change_of(specs: &[FunctionSpec], queue: &str, to: usize) -> Change {
        let spec = template::queue_specs(specs)
            .into_iter()
            .find(|q| q.queue == queue)
            .expect("queue");
        Change { spec, to }
    }
}
