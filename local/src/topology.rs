//! `orderflow topology`: declares the broker topology of template.yaml on any broker, in
//! particular Amazon MQ (which only speaks `amqps://`), where nothing else creates it: the
//! Lambda triggers only consume the queues they are given. The same declaration as `up`
//! (`shared::topology::declare`), so local and cloud brokers cannot drift apart.

use crate::template::{self, FunctionSpec};
use anyhow::Context as _;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use shared::Config;
use shared::topology::{DELIVERY_LIMIT, Names};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct TopologyArgs {
    /// Broker URL (amqps://user:password@host:5671/%2f for Amazon MQ); defaults to AMQP_URL.
    #[arg(long)]
    pub url: Option<String>,
    /// Remove this prefix's queues, dead-letter queues and exchanges instead.
    #[arg(long)]
    pub delete: bool,
    /// With --delete or --prune: also when queues still hold messages (they are lost).
    #[arg(long)]
    pub force: bool,
    /// Print what would be declared or deleted; do not connect.
    #[arg(long)]
    pub dry_run: bool,
    /// After declaring: delete the queues of a shard count the template no longer has
    /// (after `orderflow reshard`), once unbound, empty and with nothing unacknowledged.
    #[arg(long, conflicts_with_all = ["delete", "dry_run"])]
    pub prune: bool,
}

/// What the topology consists of, one line per exchange and queue.
pub fn plan(names: &Names, specs: &[FunctionSpec]) -> Vec<String> {
    let mut lines = vec![
        format!("exchange {} (topic, durable)", names.events_exchange()),
        format!(
            "exchange {} (direct, durable)",
            names.dead_letter_exchange()
        ),
    ];
    for spec in template::queue_specs(specs) {
        let source = if spec.shards > 1 {
            let hash = names.shard_exchange(&spec.queue);
            lines.push(format!(
                "exchange {hash} ({}, hash-property correlation_id) <- {}",
                shared::topology::CONSISTENT_HASH,
                spec.routing_keys.join(", ")
            ));
            format!("{hash} weight {}", shared::topology::SHARD_WEIGHT)
        } else {
            spec.routing_keys.join(", ")
        };
        for q in spec.broker_queues() {
            let queue = names.queue(&q);
            lines.push(format!(
                "queue {queue} (quorum, delivery limit {DELIVERY_LIMIT}, dead letters -> {}) <- {source}",
                names.dead_letter_exchange(),
            ));
            lines.push(format!(
                "queue {} (quorum) <- {} [{queue}]",
                names.dead_letter_queue(&q),
                names.dead_letter_exchange()
            ));
        }
    }
    lines
}

/// Runs the subcommand; `Ok(false)` when it refused (queues not empty without --force).
pub async fn run(
    mut cfg: Config,
    specs: &[FunctionSpec],
    args: TopologyArgs,
) -> anyhow::Result<bool> {
    if let Some(url) = args.url {
        cfg.amqp_url = url;
    }
    let names = Names::new(cfg.prefix.clone());
    let target = format!(
        "{} (prefix {:?})",
        shared::config::redact(&cfg.amqp_url),
        cfg.prefix
    );
    let lines = plan(&names, specs);
    if args.dry_run {
        let verb = if args.delete {
            "would delete"
        } else {
            "would declare"
        };
        for l in &lines {
            println!("{verb} {l}");
        }
        println!("{} item(s) on {target}", lines.len());
        return Ok(true);
    }
    if args.delete {
        if !args.force {
            let full = non_empty_queues(&cfg, specs).await?;
            if !full.is_empty() {
                for (q, n) in &full {
                    println!("queue {q} holds {n} message(s)");
                }
                println!("nothing deleted: pass --force to delete queues that hold messages");
                return Ok(false);
            }
        }
        crate::stack::delete_topology(&cfg, specs)
            .await
            .with_context(|| format!("deleting the topology on {target}"))?;
        println!("topology deleted on {target}");
        return Ok(true);
    }
    crate::stack::declare_topology(&cfg, specs)
        .await
        .with_context(|| {
            format!(
                "on {target} (a queue that exists with other arguments, e.g. a classic queue, \
                 must be deleted first)"
            )
        })?;
    for l in &lines {
        println!("declared {l}");
    }
    println!("topology declared on {target}");
    if args.prune {
        let ctx = shared::context::Context::new(cfg)?;
        let mut all_gone = true;
        for p in crate::reshard::prune(&ctx, specs, args.force).await? {
            println!("{}: {}", p.queue, p.why);
            all_gone &= p.deleted;
        }
        println!("prune done on {target}");
        return Ok(all_gone);
    }
    Ok(true)
}

/// Queues (and dead-letter queues) of this prefix that exist and hold messages.
pub async fn non_empty_queues(
    cfg: &Config,
    specs: &[FunctionSpec],
) -> anyhow::Result<Vec<(String, u32)>> {
    let names = Names::new(cfg.prefix.clone());
    let conn = shared::publisher::connect(&cfg.amqp_url, "topology").await?;
    let mut full = Vec::new();
    for q in crate::template_queues(specs) {
        for name in [names.queue(&q), names.dead_letter_queue(&q)] {
            // A passive declare of a missing queue closes its channel: one channel per probe.
            let ch = conn.create_channel().await?;
            let probe = ch
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            if let Ok(queue) = probe {
                if queue.message_count() > 0 {
                    full.push((name, queue.message_count()));
                }
                let _ = ch.close(200, "probed".into()).await;
            }
        }
    }
    let _ = conn.close(200, "probed".into()).await;
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_names_every_queue_its_dead_letter_queue_and_bindings() {
        let specs = template::parse(template::EMBEDDED).expect("template");
        let lines = plan(&Names::new("p."), &specs);
        let queues = crate::template_queues(&specs);
        assert_eq!(lines.len(), 2 + 2 * queues.len());
        let four = template::with_shards(template::EMBEDDED, &[("order-saga".into(), 4)])
            .expect("sharded");
        let sharded = plan(&Names::new("p."), &template::parse(&four).expect("parses"));
        assert!(
            sharded.contains(
                &"exchange p.order-saga.shards (x-consistent-hash, hash-property correlation_id) \
              <- stock.reserved, stock.rejected, payment.processed, payment.refunded, payment.refund_failed"
                    .to_string()
            )
        );
        assert!(
            sharded
                .iter()
                .any(|l| l.starts_with("queue p.order-saga.3 (quorum")
                    && l.ends_with("<- p.order-saga.shards weight 1"))
        );
        assert!(sharded.contains(
            &"queue p.order-saga.3.dlq (quorum) <- p.orderflow.dlx [p.order-saga.3]".to_string()
        ));
        assert!(lines.contains(&"exchange p.orderflow.events (topic, durable)".to_string()));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("queue p.order-saga (quorum")
                    && l.ends_with("<- stock.reserved, stock.rejected, payment.processed, payment.refunded, payment.refund_failed"))
        );
        assert!(lines.contains(
            &"queue p.order-saga.dlq (quorum) <- p.orderflow.dlx [p.order-saga]".to_string()
        ));
    }
}
