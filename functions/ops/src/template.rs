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

/// The environment variable that carries `--template` to the runners that `chaos` and
/// `bench` start as child processes, so they run the same template as their parent.
pub const TEMPLATE_ENV: &str = "ORDERFLOW_TEMPLATE";

/// The template a command runs with, and the file it came from (the built-in one if none).
#[derive(Debug, Clone)]
pub struct Source {
    pub path: Option<std::path::PathBuf>,
    pub text: String,
}

impl Source {
    pub fn embedded() -> Self {
        Source {
            path: None,
            text: EMBEDDED.to_string(),
        }
    }

    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(p) = path else {
            return Ok(Self::embedded());
        };
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        // Children may start elsewhere: give them the absolute path.
        let path = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        Ok(Source {
            path: Some(path),
            text,
        })
    }

    pub fn specs(&self) -> anyhow::Result<Vec<FunctionSpec>> {
        parse(&self.text)
    }

    /// What a child `orderflow up` needs in its environment to read the same template.
    pub fn child_env(&self) -> Vec<(String, String)> {
        self.path
            .iter()
            .map(|p| (TEMPLATE_ENV.to_string(), p.display().to_string()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub binary: String,
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Mq {
        /// The function's queue: the broker queue itself at one shard, the stem of
        /// `<queue>.0 .. <queue>.N-1` otherwise.
        queue: String,
        /// `Metadata.Orderflow.Shards` (default 1): how many queues, each with its own event
        /// source mapping, share the function's events.
        shards: usize,
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
        let shards = match meta
            .and_then(|m| m.get("Orderflow"))
            .and_then(|o| o.get("Shards"))
        {
            None => 1,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_SHARDS as u64).contains(n))
                .with_context(|| {
                    format!(
                        "{logical_id}: Metadata.Orderflow.Shards must be 1..={MAX_SHARDS}, not {v:?}"
                    )
                })? as usize,
        };
        let mut triggers = Vec::new();
        // Every MQ event is one event source mapping: (queue, batch size, window).
        let mut mappings: Vec<(String, usize, Duration)> = Vec::new();
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
                    mappings.push((
                        queue.to_string(),
                        // AWS defaults: 100 messages, 500 ms window.
                        int("BatchSize").unwrap_or(100) as usize,
                        int("MaximumBatchingWindowInSeconds")
                            .map(Duration::from_secs)
                            .unwrap_or(Duration::from_millis(500)),
                    ));
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
        if let Some((first, batch_size, window)) = mappings.first().cloned() {
            if routing_keys.is_empty() {
                bail!("{logical_id}: MQ function without Metadata.Orderflow.RoutingKeys");
            }
            let queue = shared::topology::shard_stem(&first).to_string();
            let queue = if shards == 1 { first.clone() } else { queue };
            let want = shared::topology::shard_queues(&queue, shards);
            let mut have: Vec<String> = mappings.iter().map(|m| m.0.clone()).collect();
            have.sort();
            let mut sorted_want = want.clone();
            sorted_want.sort();
            if have != sorted_want {
                bail!(
                    "{logical_id}: Metadata.Orderflow.Shards is {shards}, so it needs {} MQ \
                     event source mapping(s), one per queue {want:?}; the \
                     template has {} on {have:?}",
                    want.len(),
                    have.len()
                );
            }
            if mappings.iter().any(|m| m.1 != batch_size || m.2 != window) {
                bail!(
                    "{logical_id}: every shard's MQ event must batch alike (BatchSize, MaximumBatchingWindowInSeconds)"
                );
            }
            triggers.insert(
                0,
                Trigger::Mq {
                    queue,
                    shards,
                    batch_size,
                    window,
                    routing_keys: routing_keys.clone(),
                },
            );
        } else if meta
            .and_then(|m| m.get("Orderflow"))
            .and_then(|o| o.get("Shards"))
            .is_some()
        {
            bail!("{logical_id}: Metadata.Orderflow.Shards on a function without an MQ event");
        }
        specs.push(FunctionSpec {
            logical_id,
            binary,
            triggers,
        });
    }
    Ok(specs)
}

/// The template with other shard counts: `Metadata.Orderflow.Shards` set, the function's MQ
/// events replaced by one per shard queue (`Queue` at one shard, `Queue0..` otherwise, each
/// batching as the first did), and its dead-letter alarm replaced by one per shard's
/// dead-letter queue. `changes` names functions by binary or logical id; `all` is every
/// queue function. What `orderflow template --shards` prints, and how tests get an N = 4
/// template; comments of the source are not kept.
pub fn with_shards(text: &str, changes: &[(String, usize)]) -> anyhow::Result<String> {
    let specs = parse(text)?;
    let mut doc: Value = serde_yaml::from_str(text)?;
    let key = |k: &str| Value::String(k.to_string());
    for (name, n) in changes {
        anyhow::ensure!(
            (1..=MAX_SHARDS).contains(n),
            "{name}={n}: shards must be 1..={MAX_SHARDS}"
        );
        let picked: Vec<&FunctionSpec> = specs
            .iter()
            .filter(|f| name == "all" || f.binary == *name || f.logical_id == *name)
            .filter(|f| f.triggers.iter().any(|t| matches!(t, Trigger::Mq { .. })))
            .collect();
        anyhow::ensure!(!picked.is_empty(), "{name}: no queue function of that name");
        for f in picked {
            let Some(Trigger::Mq { queue, shards, .. }) =
                f.triggers.iter().find(|t| matches!(t, Trigger::Mq { .. }))
            else {
                continue;
            };
            let resources = doc
                .get_mut("Resources")
                .and_then(Value::as_mapping_mut)
                .context("template has no Resources")?;
            let res = resources
                .get_mut(key(&f.logical_id))
                .context("function vanished")?;
            res["Metadata"]["Orderflow"]
                .as_mapping_mut()
                .context("Metadata.Orderflow")?
                .insert(key("Shards"), Value::from(*n as u64));
            let events = res["Properties"]["Events"]
                .as_mapping_mut()
                .context("Properties.Events")?;
            let mq: Vec<Value> = events
                .iter()
                .filter(|(_, e)| e.get("Type").and_then(Value::as_str) == Some("MQ"))
                .map(|(k, _)| k.clone())
                .collect();
            let proto = events.get(&mq[0]).cloned().context("MQ event")?;
            for k in &mq {
                events.remove(k);
            }
            let new_queues = shared::topology::shard_queues(queue, *n);
            for (i, q) in new_queues.iter().enumerate() {
                let mut ev = proto.clone();
                ev["Properties"]["Queues"] = Value::Sequence(vec![key(q)]);
                let name = if *n == 1 {
                    "Queue".to_string()
                } else {
                    format!("Queue{i}")
                };
                events.insert(key(&name), ev);
            }
            // The dead-letter alarms of the old queues give way to one per new queue.
            let names = shared::topology::Names::default();
            let old_dlqs: Vec<String> = shared::topology::shard_queues(queue, *shards)
                .iter()
                .map(|q| names.dead_letter_queue(q))
                .collect();
            let alarms: Vec<(Value, Value)> = resources
                .iter()
                .filter(|(_, r)| {
                    r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
                        && r["Properties"]["Namespace"].as_str() == Some("AWS/AmazonMQ")
                        && r["Properties"]["Dimensions"]
                            .as_sequence()
                            .into_iter()
                            .flatten()
                            .any(|d| {
                                d["Name"].as_str() == Some("Queue")
                                    && d["Value"]
                                        .as_str()
                                        .is_some_and(|v| old_dlqs.iter().any(|o| o == v))
                            })
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let Some((proto_id, proto)) = alarms.first().cloned() else {
                continue;
            };
            for (k, _) in &alarms {
                resources.remove(k);
            }
            let stem_id = proto_id
                .as_str()
                .unwrap_or_default()
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .to_string();
            for (i, q) in new_queues.iter().enumerate() {
                let mut alarm = proto.clone();
                let props = alarm["Properties"]
                    .as_mapping_mut()
                    .context("alarm Properties")?;
                props.insert(
                    key("AlarmName"),
                    Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                        tag: serde_yaml::value::Tag::new("Sub"),
                        value: key(&format!("${{AWS::StackName}}-dead-letters-{q}")),
                    })),
                );
                props.insert(
                    key("AlarmDescription"),
                    key(&format!(
                        "Messages wait in {}.dlq (see `orderflow dlq`); each carries its reason.",
                        q
                    )),
                );
                for d in props
                    .get_mut(key("Dimensions"))
                    .and_then(Value::as_sequence_mut)
                    .into_iter()
                    .flatten()
                {
                    if d["Name"].as_str() == Some("Queue") {
                        d["Value"] = key(&names.dead_letter_queue(q));
                    }
                }
                let id = if *n == 1 {
                    stem_id.clone()
                } else {
                    format!("{stem_id}{i}")
                };
                resources.insert(key(&id), alarm);
            }
        }
    }
    let out = serde_yaml::to_string(&doc)?;
    parse(&out).context("the template with new shard counts does not parse")?;
    Ok(out)
}

/// `FN=N` (binary or logical id, or `all`, and a shard count).
pub fn parse_shard_change(s: &str) -> anyhow::Result<(String, usize)> {
    let (name, n) = s
        .split_once('=')
        .with_context(|| format!("{s:?}: expected FUNCTION=SHARDS, e.g. inventory-reserve=4"))?;
    let n: usize = n
        .trim()
        .parse()
        .with_context(|| format!("{s:?}: the shard count must be a number"))?;
    Ok((name.trim().to_string(), n))
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

/// The most shards a function may have (a sanity bound: each is a queue, a consumer and an
/// event source mapping).
pub const MAX_SHARDS: usize = 64;

/// The queues and bindings the topology must declare.
pub fn queue_specs(specs: &[FunctionSpec]) -> Vec<shared::topology::QueueSpec> {
    specs
        .iter()
        .flat_map(|f| &f.triggers)
        .filter_map(|t| match t {
            Trigger::Mq {
                queue,
                routing_keys,
                shards,
                ..
            } => Some(shared::topology::QueueSpec {
                queue: queue.clone(),
                routing_keys: routing_keys.clone(),
                shards: *shards,
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
            matches!(&saga.triggers[0], Trigger::Mq { routing_keys, .. } if routing_keys.len() == 5),
            "stock and payment results, and refund outcomes"
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
