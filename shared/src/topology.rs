//! Broker and cache names (all prefixed per stack) and the declaration of the topology:
//! one topic exchange for events, one direct dead-letter exchange, one quorum queue per
//! function (or per shard of a sharded function) with its dead-letter queue.
//!
//! A function with N > 1 shards has queues `<queue>.0 .. <queue>.N-1` behind a
//! consistent-hash exchange `<queue>.shards` that hashes on `correlation_id` (the order id),
//! so every event of one order lands on one shard, in publish order. With N = 1 the queue
//! keeps its plain name and is bound to the events exchange directly, as before shards.

use lapin::Channel;
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};

/// Headers a parked (dead-lettered by us) message carries.
pub mod parked {
    pub const REASON: &str = "x-orderflow-reason";
    pub const ORIGINAL_QUEUE: &str = "x-orderflow-original-queue";
    pub const ORIGINAL_ROUTING_KEY: &str = "x-orderflow-original-routing-key";
    pub const ATTEMPTS: &str = "x-orderflow-attempts";
    pub const PARKED_AT: &str = "x-orderflow-parked-at";
    pub const FUNCTION: &str = "x-orderflow-function";
}

/// Broker-side backstop: a message redelivered this many times is dead-lettered by the
/// quorum queue itself, so a poison message can never loop forever.
pub const DELIVERY_LIMIT: i64 = 50;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Names {
            prefix: prefix.into(),
        }
    }

    pub fn events_exchange(&self) -> String {
        format!("{}orderflow.events", self.prefix)
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}orderflow.dlx", self.prefix)
    }

    /// The broker queue for a queue name as written in template.yaml.
    pub fn queue(&self, template_queue: &str) -> String {
        format!("{}{template_queue}", self.prefix)
    }

    pub fn dead_letter_queue(&self, template_queue: &str) -> String {
        format!("{}{template_queue}.dlq", self.prefix)
    }

    /// The consistent-hash exchange in front of a sharded function's queues.
    pub fn shard_exchange(&self, template_queue: &str) -> String {
        format!("{}{template_queue}.shards", self.prefix)
    }

    /// A Redis key in this stack's namespace.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// Whether a topic-exchange binding `pattern` routes `routing_key`: words split on `.`,
/// `*` matches exactly one word, `#` zero or more.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|skip| go(rest, &k[skip..])),
            Some((w, rest)) => match k.split_first() {
                Some((kw, krest)) => (*w == "*" || w == kw) && go(rest, krest),
                None => false,
            },
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = routing_key.split('.').collect();
    go(&p, &k)
}

/// One function's queue and the routing keys bound to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The function's queue name (unprefixed): the queue itself when unsharded, the stem of
    /// the shard queues otherwise.
    pub queue: String,
    pub routing_keys: Vec<String>,
    /// How many queues share the function's events (1: no sharding).
    pub shards: usize,
}

impl QueueSpec {
    /// The broker queues (unprefixed) this function consumes.
    pub fn broker_queues(&self) -> Vec<String> {
        shard_queues(&self.queue, self.shards)
    }
}

/// The queues of a function at `shards` shards: the plain name at 1 (so an unsharded
/// deployment is what it was before shards existed), `<queue>.<i>` otherwise.
pub fn shard_queues(queue: &str, shards: usize) -> Vec<String> {
    if shards <= 1 {
        vec![queue.to_string()]
    } else {
        (0..shards).map(|i| format!("{queue}.{i}")).collect()
    }
}

/// The function queue (unprefixed) a broker queue belongs to: `inventory-reserve.3` ->
/// `inventory-reserve`; an unsharded name is its own.
pub fn shard_stem(queue: &str) -> &str {
    match queue.rsplit_once('.') {
        Some((stem, i)) if !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) => stem,
        _ => queue,
    }
}

/// Arguments of a shard exchange: hash the `correlation_id` property (the order id every
/// publisher sets), not the routing key, which is the event type and would send every
/// `order.created` to one shard.
pub fn shard_exchange_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "hash-property".into(),
        AMQPValue::LongString("correlation_id".into()),
    );
    args
}

/// The exchange type of the consistent-hash plugin (`rabbitmq_consistent_hash_exchange`).
pub const CONSISTENT_HASH: &str = "x-consistent-hash";

/// A shard queue's binding key on the hash exchange: its weight. Every shard weighs the same.
pub const SHARD_WEIGHT: &str = "1";

/// Declares exchanges, queues, dead-letter queues and bindings; idempotent.
pub async fn declare(ch: &Channel, names: &Names, specs: &[QueueSpec]) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        names.events_exchange().as_str().into(),
        lapin::ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        names.dead_letter_exchange().as_str().into(),
        lapin::ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await?;
    for spec in specs {
        for q in spec.broker_queues() {
            declare_queue(ch, names, &q).await?;
        }
        if spec.shards <= 1 {
            let queue = names.queue(&spec.queue);
            for key in &spec.routing_keys {
                ch.queue_bind(
                    queue.as_str().into(),
                    names.events_exchange().as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
            continue;
        }
        let hash = names.shard_exchange(&spec.queue);
        ch.exchange_declare(
            hash.as_str().into(),
            lapin::ExchangeKind::Custom(CONSISTENT_HASH.into()),
            durable,
            shard_exchange_args(),
        )
        .await?;
        for q in spec.broker_queues() {
            ch.queue_bind(
                names.queue(&q).as_str().into(),
                hash.as_str().into(),
                SHARD_WEIGHT.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        for key in &spec.routing_keys {
            ch.exchange_bind(
                hash.as_str().into(),
                names.events_exchange().as_str().into(),
                key.as_str().into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
    }
    Ok(())
}

/// Declares one broker queue (unprefixed name) and its dead-letter queue, bound to the
/// dead-letter exchange with the queue's name: the key both the broker (past the delivery
/// limit) and a function that parks a message use. Each shard has its own, so a shard's
/// dead letters are never stranded without a binding (publishes are mandatory).
pub async fn declare_queue(
    ch: &Channel,
    names: &Names,
    template_queue: &str,
) -> Result<(), lapin::Error> {
    let queue_opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let queue = names.queue(template_queue);
    let dlq = names.dead_letter_queue(template_queue);
    let mut dlq_args = FieldTable::default();
    dlq_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(dlq.as_str().into(), queue_opts, dlq_args)
        .await?;
    ch.queue_bind(
        dlq.as_str().into(),
        names.dead_letter_exchange().as_str().into(),
        queue.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(names.dead_letter_exchange().as_str().into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.as_str().into()),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    ch.queue_declare(queue.as_str().into(), queue_opts, args)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_as_rabbitmq_does() {
        for (pattern, key, want) in [
            ("#", "order.created", true),
            ("order.created", "order.created", true),
            ("order.*", "order.created", true),
            ("order.*", "stock.reserved", false),
            ("*", "order.created", false),
            ("order.#", "order", true),
            ("#.created", "order.created", true),
            ("order.created", "order.cancelled", false),
        ] {
            assert_eq!(topic_matches(pattern, key), want, "{pattern} vs {key}");
        }
    }

    #[test]
    fn shard_queues_keep_the_plain_name_at_one_shard_and_number_from_zero() {
        assert_eq!(shard_queues("order-saga", 1), vec!["order-saga"]);
        assert_eq!(
            shard_queues("order-saga", 3),
            vec!["order-saga.0", "order-saga.1", "order-saga.2"]
        );
        assert_eq!(shard_stem("order-saga.12"), "order-saga");
        assert_eq!(shard_stem("order-saga"), "order-saga");
        assert_eq!(shard_stem("p.order-saga"), "p.order-saga");
        assert_eq!(shard_stem("order-saga."), "order-saga.");
    }

    #[test]
    fn every_name_carries_the_prefix() {
        let n = Names::new("t1.");
        assert_eq!(n.events_exchange(), "t1.orderflow.events");
        assert_eq!(n.queue("inventory-reserve"), "t1.inventory-reserve");
        assert_eq!(
            n.dead_letter_queue("inventory-reserve"),
            "t1.inventory-reserve.dlq"
        );
        assert_eq!(n.redis_key("stock:sku-1"), "t1.stock:sku-1");
    }
}
