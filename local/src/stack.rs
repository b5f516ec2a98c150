//! Starting and stopping the whole system in one process: migrations, topology, then every
//! function of template.yaml behind its trigger (queue bridge, HTTP route, schedule).

use crate::bridge;
use crate::front::{self, Front, Route};
use crate::invoke::Target;
use crate::metrics;
use crate::template::{self, FunctionSpec, Trigger};
use anyhow::Context as _;
use shared::Config;
use shared::context::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub http_addr: SocketAddr,
    /// Where `/metrics` is served (`ORDERFLOW_METRICS_ADDR`, default 127.0.0.1:9464; `off`
    /// for none), never on the API's port.
    pub metrics_addr: Option<SocketAddr>,
    /// Timeouts and the body size limit of the front door.
    pub http_limits: front::Limits,
    /// Send invocations to a Lambda emulator (`cargo lambda watch`) instead of in-process.
    pub invoke_url: Option<String>,
    pub template: String,
    /// Run every schedule at this interval instead of its rate (tests, demos).
    pub schedule_every: Option<Duration>,
    /// Origins whose browser pages may call the API (`ORDERFLOW_CORS_ORIGINS`).
    pub cors: crate::cors::Cors,
}

/// The default of `ORDERFLOW_METRICS_ADDR` (9464: the port Prometheus' exporters' registry
/// gives OpenTelemetry's Prometheus exporter, free of this stack's other ports).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

impl StackOptions {
    pub fn from_env() -> anyhow::Result<Self> {
        let http_addr =
            std::env::var("ORDERFLOW_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
        let metrics_addr = match std::env::var("ORDERFLOW_METRICS_ADDR") {
            Ok(v) if v.trim() == "off" => None,
            Ok(v) => Some(v.parse().with_context(|| {
                format!("ORDERFLOW_METRICS_ADDR={v:?} is not an address (or off)")
            })?),
            Err(_) => Some(DEFAULT_METRICS_ADDR.parse()?),
        };
        let ms = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            match std::env::var(name) {
                Ok(v) => {
                    Ok(Duration::from_millis(v.trim().parse().with_context(
                        || format!("{name}={v:?} must be milliseconds"),
                    )?))
                }
                Err(_) => Ok(default),
            }
        };
        let defaults = front::Limits::default();
        let http_limits = front::Limits {
            header_read_timeout: ms(
                "ORDERFLOW_HTTP_HEADER_TIMEOUT_MS",
                defaults.header_read_timeout,
            )?,
            body_read_timeout: ms("ORDERFLOW_HTTP_BODY_TIMEOUT_MS", defaults.body_read_timeout)?,
            max_body_bytes: match std::env::var("ORDERFLOW_HTTP_MAX_BODY_BYTES") {
                Ok(v) => v.trim().parse().with_context(|| {
                    format!("ORDERFLOW_HTTP_MAX_BODY_BYTES={v:?} must be bytes")
                })?,
                Err(_) => defaults.max_body_bytes,
            },
        };
        let schedule_every = match std::env::var("ORDERFLOW_SCHEDULE_EVERY_SECS") {
            Ok(v) => Some(Duration::from_secs_f64(
                v.parse()
                    .context("ORDERFLOW_SCHEDULE_EVERY_SECS must be a number")?,
            )),
            Err(_) => None,
        };
        Ok(StackOptions {
            http_addr: http_addr
                .parse()
                .with_context(|| format!("ORDERFLOW_HTTP_ADDR={http_addr:?} is not an address"))?,
            metrics_addr,
            http_limits,
            invoke_url: None,
            template: template::EMBEDDED.to_string(),
            schedule_every,
            cors: crate::cors::Cors::from_env().map_err(anyhow::Error::msg)?,
        })
    }
}

pub struct Stack {
    pub ctx: Context,
    pub http_addr: SocketAddr,
    /// Where `/metrics` answers, when served.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Checks every dependency answers, naming the one that does not (password hidden).
pub async fn preflight(cfg: &Config) -> anyhow::Result<()> {
    let redis = shared::cache::Redis::new(&cfg.redis_url)?;
    let mut conn = redis
        .conn()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Redis at {}: {e}", redis.url_redacted()))?;
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Redis at {}: {e}", redis.url_redacted()))?;
    let amqp = shared::publisher::connect(&cfg.amqp_url, "preflight").await?;
    let _ = amqp.close(200, "preflight done".into()).await;
    Ok(())
}

/// Migrations of every service and the broker topology of every queue trigger (the same
/// code the bootstrap custom resource runs on a deploy).
pub async fn prepare(cfg: &Config, specs: &[FunctionSpec]) -> anyhow::Result<()> {
    ops::prepare::prepare(cfg, specs).await
}

pub use ops::prepare::{create_database_if_missing, declare_topology, delete_topology};

impl Stack {
    pub async fn start(cfg: Config, opts: StackOptions) -> anyhow::Result<Stack> {
        Self::start_with(cfg, opts, crate::registry::find).await
    }

    /// Same, with the function of each binary taken from `find` (the bench's baseline
    /// swaps the business functions for stand-ins this way).
    pub async fn start_with(
        cfg: Config,
        opts: StackOptions,
        find: fn(&str) -> Option<shared::Constructor>,
    ) -> anyhow::Result<Stack> {
        let specs = template::parse(&opts.template)?;
        preflight(&cfg).await?;
        prepare(&cfg, &specs).await?;
        let ctx = Context::new(cfg.clone())?;
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Queue depths, dead letters, outbox lag and orders by state, from the sources.
        let poll_every = opts
            .schedule_every
            .map_or(metrics::POLL_EVERY, |e| e.min(metrics::POLL_EVERY));
        tasks.push(tokio::spawn(metrics::poll(
            ctx.clone(),
            crate::template_queues(&specs),
            poll_every,
            rx.clone(),
        )));
        let mut routes = Vec::new();
        let vhost = cfg.vhost();
        let target_of = |spec: &FunctionSpec| -> anyhow::Result<Target> {
            Ok(match &opts.invoke_url {
                Some(url) => Target::remote(url, &spec.binary),
                None => {
                    let ctor = find(&spec.binary).with_context(|| {
                        format!("template names {} but no service provides it", spec.binary)
                    })?;
                    let function = ctor(&ctx);
                    if let Some(error) = function.init_error() {
                        anyhow::bail!("{error}");
                    }
                    Target::InProcess(function)
                }
            })
        };
        // The HTTP API's authorizers, one (with its cache) per name, as API Gateway has.
        let mut gates: std::collections::HashMap<String, Arc<front::Gate>> = Default::default();
        for spec in specs.iter().flat_map(|s| &s.triggers) {
            let Trigger::Http {
                authorizer: Some(a),
                ..
            } = spec
            else {
                continue;
            };
            if gates.contains_key(&a.name) {
                continue;
            }
            let owner = specs
                .iter()
                .find(|s| s.binary == a.binary)
                .with_context(|| format!("authorizer {} names no function", a.name))?;
            gates.insert(
                a.name.clone(),
                Arc::new(front::Gate::new(a.clone(), target_of(owner)?)),
            );
        }
        for spec in &specs {
            // Functions without a trigger of their own (the authorizer, run above by the
            // front door; the deploy's bootstrap custom resource) are not wired here.
            if spec.triggers.is_empty() {
                continue;
            }
            let target = target_of(spec)?;
            for trigger in &spec.triggers {
                match trigger {
                    Trigger::Mq {
                        queue,
                        shards,
                        batch_size,
                        window,
                        ..
                    } => {
                        // One consumer per shard queue, as AWS runs one event source
                        // mapping per shard: shards of one function run side by side.
                        for q in shared::topology::shard_queues(queue, *shards) {
                            let t = bridge::Trigger {
                                function: spec.binary.clone(),
                                queue: ctx.names.queue(&q),
                                vhost: vhost.clone(),
                                batch_size: *batch_size,
                                window: *window,
                                target: target.clone(),
                                amqp_url: cfg.amqp_url.clone(),
                                faults: cfg.faults.clone(),
                            };
                            tasks.push(tokio::spawn(bridge::run(t, rx.clone())));
                        }
                    }
                    Trigger::Http {
                        method,
                        path,
                        authorizer,
                    } => routes.push(Route {
                        method: method.clone(),
                        path: path.clone(),
                        function: spec.binary.clone(),
                        target: target.clone(),
                        authorizer: authorizer
                            .as_ref()
                            .and_then(|a| gates.get(&a.name).cloned()),
                    }),
                    Trigger::Schedule { every, expression } => {
                        let every = opts.schedule_every.unwrap_or(*every);
                        tasks.push(tokio::spawn(schedule(
                            spec.binary.clone(),
                            expression.clone(),
                            every,
                            target.clone(),
                            rx.clone(),
                        )));
                    }
                }
            }
        }
        let front = Arc::new(Front {
            routes,
            limits: opts.http_limits,
            cors: opts.cors.clone(),
        });
        let (http_addr, http_task) = front::serve(opts.http_addr, front, rx.clone()).await?;
        tasks.push(http_task);
        let metrics_addr = match opts.metrics_addr {
            Some(addr) => {
                let (bound, task) = front::serve_metrics(addr, rx.clone()).await?;
                tasks.push(task);
                Some(bound)
            }
            None => None,
        };
        Ok(Stack {
            ctx,
            http_addr,
            metrics_addr,
            shutdown,
            tasks,
        })
    }

    /// Graceful stop: no new batches or requests, in-flight ones finish and are acked.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .is_err()
        {
            tracing::warn!("some triggers did not stop within 30 s");
        }
    }
}

async fn schedule(
    function: String,
    expression: String,
    every: Duration,
    target: Target,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let event = serde_json::json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "000000000000",
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": "local",
            "resources": [format!("arn:aws:events:local:000000000000:rule/{function}")],
            "detail": {},
        });
        let started = std::time::Instant::now();
        let answer = target.invoke(event).await;
        shared::metrics::invocation(&function, answer.as_ref().ok(), started.elapsed());
        match answer {
            Ok(answer) => tracing::debug!(%function, %expression, %answer, "schedule ran"),
            Err(error) => {
                tracing::warn!(%function, %error, "scheduled invocation failed; next tick retries")
            }
        }
    }
}
