//! The local runner `orderflow`: hosts every function of template.yaml in one process
//! behind an AWS-faithful RabbitMQ bridge, an API Gateway-like HTTP front door and the
//! schedules, and carries the operator commands (seed, demo, verify, timeline, ...).

pub mod baseline;
pub mod bench;
pub mod bridge;
pub mod broker;
pub mod chaos;
pub mod child;
pub mod cors;
pub mod demo;
pub mod demo_after;
pub mod dlq;
pub mod front;
pub mod invoke;
pub mod metrics;
pub mod outcomes;
pub mod registry;
pub mod reshard;
pub mod seed;
pub mod stack;
pub mod timeline;
pub mod topology;
pub mod verify;

/// template.yaml read into specs (shared with the bootstrap custom resource).
pub use ops::template;

/// Broker queue names (unprefixed) of every queue trigger in the template: each shard
/// queue of a sharded function (each has its own dead-letter queue).
pub fn template_queues(specs: &[template::FunctionSpec]) -> Vec<String> {
    template::queue_specs(specs)
        .iter()
        .flat_map(shared::topology::QueueSpec::broker_queues)
        .collect()
}
