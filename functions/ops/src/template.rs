//! Reads template.yaml, the one source of truth for functions and their triggers, into the
//! specs the runner wires: queue triggers, HTTP routes and schedules. Shared by the runner
//! and the bootstrap custom resource, so a deploy declares the topology `orderflow
//! topology` declares.

use anyhow::{Context as _, bail};
use serde_yaml::Value;
use std::time::Duration;

pub use crate::authorizers::Authorizer;
use crate::authorizers::{api_authorizers, route_authorizer};

/// The template compiled into the runner, so `orderflow` works from any directory.
pub const EMBEDDED: &str = include_str!("../../../template.yaml");

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub binary: String,
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Mq {
        queue: String,
        batch_size: usize,
        window: Duration,
        routing_keys: Vec<String>,
    },
    Http {
        method: String,
        path: String,
        /// The Lambda authorizer API Gateway runs first; `None` for a public route
        /// (`Auth: Authorizer: NONE`, or an API without a default authorizer).
        authorizer: Option<Authorizer>,
    },
    Schedule {
        every: Duration,
        expression: String,
    },
}

pub fn parse(text: &str) -> anyhow::Result<Vec<FunctionSpec>> {
    let doc: Value = serde_yaml::from_str(text).context("template.yaml is not valid YAML")?;
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .context("template has no Resources")?;
    let apis = api_authorizers(resources)?;
    let mut specs = Vec::new();
    for (id, res) in resources {
        if res.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let logical_id = id.as_str().unwrap_or_default().to_string();
        let meta = res.get("Metadata");
        let binary = meta
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(Value::as_str)
            .with_context(|| format!("{logical_id}: Metadata.BuildProperties.Binary is missing"))?
            .to_string();
        let routing_keys: Vec<String> = meta
            .and_then(|m| m.get("Orderflow"))
            .and_then(|o| o.get("RoutingKeys"))
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        // A function without events (the authorizer, the bootstrap custom resource) is
        // invoked by API Gateway or CloudFormation, not by a trigger of its own.
        let no_events = serde_yaml::Mapping::new();
        let events = res
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
            .unwrap_or(&no_events);
        let mut triggers = Vec::new();
        for (_, ev) in events {
            let props = ev.get("Properties").unwrap_or(&Value::Null);
            let int = |k: &str| props.get(k).and_then(Value::as_u64);
            match ev.get("Type").and_then(Value::as_str) {
                Some("MQ") => {
                    let queue = props
                        .get("Queues")
                        .and_then(Value::as_sequence)
                        .and_then(|q| q.first())
                        .and_then(Value::as_str)
                        .with_context(|| format!("{logical_id}: MQ event without Queues"))?;
                    if routing_keys.is_empty() {
                        bail!("{logical_id}: MQ function without Metadata.Orderflow.RoutingKeys");
                    }
                    triggers.push(Trigger::Mq {
                        queue: queue.to_string(),
                        // AWS defaults: 100 messages, 500 ms window.
                        batch_size: int("BatchSize").unwrap_or(100) as usize,
                        window: int("MaximumBatchingWindowInSeconds")
                            .map(Duration::from_secs)
                            .unwrap_or(Duration::from_millis(500)),
                        routing_keys: routing_keys.clone(),
                    });
                }
                Some("HttpApi") => triggers.push(Trigger::Http {
                    method: props
                        .get("Method")
                        .and_then(Value::as_str)
                        .unwrap_or("ANY")
                        .to_ascii_uppercase(),
                    path: props
                        .get("Path")
                        .and_then(Value::as_str)
                        .context("HttpApi event without Path")?
                        .to_string(),
                    authorizer: route_authorizer(&apis, &logical_id, props)?,
                }),
                Some("Schedule") => {
                    let expression = props
                        .get("Schedule")
                        .and_then(Value::as_str)
                        .context("Schedule without expression")?;
                    triggers.push(Trigger::Schedule {
                        every: parse_rate(expression)?,
                        expression: expression.to_string(),
                    });
                }
                other => bail!("{logical_id}: unsupported event type {other:?}"),
            }
        }
        specs.push(FunctionSpec {
            logical_id,
            binary,
            triggers,
        });
    }
    Ok(specs)
}

/// `rate(1 minute)`, `rate(5 minutes)`, `rate(2 hours)`, `rate(1 day)`.
pub fn parse_rate(expr: &str) -> anyhow::Result<Duration> {
    let inner = expr
        .strip_prefix("rate(")
        .and_then(|s| s.strip_suffix(')'))
        .with_context(|| format!("only rate(...) schedules are supported, not {expr:?}"))?;
    let (n, unit) = inner
        .trim()
        .split_once(' ')
        .with_context(|| format!("bad rate {expr:?}"))?;
    let n: u64 = n.parse().with_context(|| format!("bad rate {expr:?}"))?;
    let secs = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86400,
        _ => bail!("bad rate unit in {expr:?}"),
    };
    Ok(Duration::from_secs(n * secs))
}

/// The queues and bindings the topology must declare.
pub fn queue_specs(specs: &[FunctionSpec]) -> Vec<shared::topology::QueueSpec> {
    specs
        .iter()
        .flat_map(|f| &f.triggers)
        .filter_map(|t| match t {
            Trigger::Mq {
                queue,
                routing_keys,
                ..
            } => Some(shared::topology::QueueSpec {
                queue: queue.clone(),
                routing_keys: routing_keys.clone(),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_template_parses_with_every_kind_of_trigger() {
        let specs = parse(EMBEDDED).expect("parses");
        let kinds = |f: fn(&Trigger) -> bool| {
            specs
                .iter()
                .flat_map(|s| &s.triggers)
                .filter(|t| f(t))
                .count()
        };
        assert!(kinds(|t| matches!(t, Trigger::Mq { .. })) >= 5);
        assert!(kinds(|t| matches!(t, Trigger::Http { .. })) >= 6);
        assert!(kinds(|t| matches!(t, Trigger::Schedule { .. })) >= 1);
        let saga = specs
            .iter()
            .find(|s| s.binary == "order-saga")
            .expect("order-saga");
        assert!(
            matches!(&saga.triggers[0], Trigger::Mq { routing_keys, .. } if routing_keys.len() == 3)
        );
    }

    #[test]
    fn rates_are_understood() {
        assert_eq!(
            parse_rate("rate(1 minute)").ok(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_rate("rate(2 hours)").ok(),
            Some(Duration::from_secs(7200))
        );
        assert!(parse_rate("cron(0 * * * ? *)").is_err());
    }
}
