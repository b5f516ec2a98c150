//! Broker and cache names (all prefixed per stack) and the declaration of the topology:
//! one topic exchange for events, one direct dead-letter exchange, one quorum queue per
//! function with its dead-letter queue.

use lapin::Channel;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
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
    /// Queue name as written in template.yaml (unprefixed).
    pub queue: String,
    pub routing_keys: Vec<String>,
}

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
    let queue_opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for spec in specs {
        let queue = names.queue(&spec.queue);
        let dlq = names.dead_letter_queue(&spec.queue);
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
    }
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
