//! One shape for every function: JSON in, JSON out. Lambda's runtime and the local runner
//! call the same object, so a handler runs identically in both places.

use crate::context::Context;
use crate::http::{ApiError, Request, Response};
use crate::rmq::RmqEvent;
use crate::runner::{BatchRunner, MessageHandler};
use async_trait::async_trait;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

pub type FunctionError = Box<dyn std::error::Error + Send + Sync>;

#[async_trait]
pub trait Function: Send + Sync {
    /// Handles one invocation. An `Err` is a failed invocation (for a queue trigger, the
    /// whole batch comes back).
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError>;

    /// Why this function cannot run with its configuration, if it cannot: Lambda's init
    /// phase (`serve`) and the local runner refuse to start it, naming the setting.
    fn init_error(&self) -> Option<String> {
        None
    }
}

/// A function whose configuration is wrong (a simulated gateway in production, a missing
/// key). Its init fails with `error`; invoked anyway (a caller that skipped the check),
/// every invocation fails with it, so queued messages stay queued instead of being lost.
pub struct Misconfigured {
    pub function: &'static str,
    pub error: String,
}

/// `function` as a `Misconfigured` function failing with `error` (logged once, here).
pub fn misconfigured(function: &'static str, error: impl std::fmt::Display) -> Arc<dyn Function> {
    let error = error.to_string();
    tracing::error!(function, %error, "function misconfigured");
    Arc::new(Misconfigured { function, error })
}

#[async_trait]
impl Function for Misconfigured {
    async fn invoke(&self, _event: Value) -> Result<Value, FunctionError> {
        Err(format!("{} is misconfigured: {}", self.function, self.error).into())
    }

    fn init_error(&self) -> Option<String> {
        Some(format!(
            "{} is misconfigured: {}",
            self.function, self.error
        ))
    }
}

/// How a binary name maps to the function it serves; each service lists its own.
pub type Constructor = fn(&Context) -> Arc<dyn Function>;

/// Queue-triggered: `aws:rmq` batches through the batch runner.
pub struct RmqFunction<H: MessageHandler>(pub BatchRunner<H>);

#[async_trait]
impl<H: MessageHandler> Function for RmqFunction<H> {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        // A payload that is not an aws:rmq event at all cannot be parked message by message;
        // it is a wiring mistake and fails loudly.
        let event: RmqEvent =
            serde_json::from_value(event).map_err(|e| format!("not an aws:rmq event: {e}"))?;
        let function = self.0.handler.name();
        let started = std::time::Instant::now();
        let result = self.0.run(&event).await;
        batch_metrics(
            function,
            event.len(),
            started.elapsed(),
            result.as_ref().ok(),
        );
        Ok(serde_json::to_value(result?)?)
    }
}

/// Batch size and duration, and each message's outcome (a failed batch comes back whole).
fn batch_metrics(
    function: &str,
    size: usize,
    elapsed: std::time::Duration,
    report: Option<&crate::runner::BatchReport>,
) {
    use crate::metrics::{BATCH_DURATION, BATCH_SIZE, MESSAGES};
    BATCH_SIZE.observe(&[function], size as f64);
    BATCH_DURATION.observe(&[function], elapsed.as_secs_f64());
    let outcomes = match report {
        Some(r) => [
            ("processed", r.processed),
            ("duplicate", r.duplicates),
            ("parked", r.parked.len()),
        ]
        .to_vec(),
        None => vec![("failed", size)],
    };
    for (outcome, n) in outcomes {
        MESSAGES.add(&[function, outcome], n as f64);
    }
}

/// HTTP-triggered (API Gateway HTTP API, payload v2).
pub struct HttpFunction<F>(pub F);

#[async_trait]
impl<F, Fut> Function for HttpFunction<F>
where
    F: Fn(Request) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Response, ApiError>> + Send,
{
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        let response = match serde_json::from_value::<Request>(event) {
            Ok(req) => crate::http::respond((self.0)(req).await),
            Err(e) => {
                ApiError::bad_request(format!("not an HTTP API v2 request: {e}")).into_response()
            }
        };
        Ok(serde_json::to_value(response)?)
    }
}

/// Schedule-triggered (EventBridge): the event content is not used.
pub struct ScheduleFunction<F>(pub F);

#[async_trait]
impl<F, Fut> Function for ScheduleFunction<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = anyhow::Result<Value>> + Send,
{
    async fn invoke(&self, _event: Value) -> Result<Value, FunctionError> {
        (self.0)().await.map_err(|e| format!("{e:#}").into())
    }
}

/// The whole `main` of a function binary: telemetry, config, state once, then the runtime.
/// Each invocation ends by writing its metrics as CloudWatch EMF lines to stdout.
///
/// Not an `async fn` so that `#[track_caller]` sees the calling binary: its file
/// (`src/bin/order-saga.rs`) names the function in metrics as the local runner does, where
/// the Lambda function name would carry the stack's prefix.
#[track_caller]
pub fn serve(constructor: Constructor) -> impl Future<Output = Result<(), lambda_runtime::Error>> {
    let name = binary_name(std::panic::Location::caller().file());
    async move {
        crate::telemetry::init();
        crate::metrics::emf::enable();
        // Secrets named by their ARNs are read once, here, before anything connects.
        let config = crate::secrets::config_from_env()
            .await
            .map_err(|e| format!("{e:#}"))?;
        let ctx = Context::new(config)?;
        let function = constructor(&ctx);
        if let Some(error) = function.init_error() {
            // Failing the init phase shows the reason in the function's log and keeps the
            // trigger's messages on their queue.
            return Err(error.into());
        }
        let name: Arc<str> = name.into();
        lambda_runtime::run(lambda_runtime::service_fn(
            move |event: lambda_runtime::LambdaEvent<Value>| {
                let (function, name) = (function.clone(), name.clone());
                async move {
                    let started = std::time::Instant::now();
                    let result = function.invoke(event.payload).await;
                    crate::metrics::invocation(&name, result.as_ref().ok(), started.elapsed());
                    crate::metrics::emf::flush();
                    result
                }
            },
        ))
        .await
    }
}

/// `functions/order/src/bin/order-saga.rs` -> `order-saga`; the Lambda function name when
/// the caller is not a binary source file.
fn binary_name(caller_file: &str) -> String {
    let path = std::path::Path::new(caller_file);
    let in_bin = path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|d| d == "bin");
    match path.file_stem().and_then(|s| s.to_str()) {
        Some(stem) if in_bin => stem.to_string(),
        _ => std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "unknown".into()),
    }
}

/// The outbox relay of one service's schema, as a scheduled function: publishes rows a
/// crash or a broker outage left unpublished (older than a few seconds, so the normal
/// after-commit path is not raced), with confirms, until none is left.
pub fn outbox_relay(ctx: &Context, schema: &'static str) -> Arc<dyn Function> {
    let ctx = ctx.clone();
    Arc::new(ScheduleFunction(move || {
        let ctx = ctx.clone();
        async move {
            let mut total = 0;
            loop {
                let sent = relay_once(&ctx, schema, 500).await?;
                total += sent;
                if sent < 500 {
                    break;
                }
            }
            if total > 0 {
                tracing::info!(schema, published = total, "outbox relay re-sent events");
            }
            // What is left is the outbox lag the alarms watch (EMF `OutboxLagSeconds`).
            let (unpublished, lag) = outbox_gauges(&ctx, schema).await?;
            Ok(serde_json::json!({
                "published": total,
                "unpublished": unpublished,
                "lag_seconds": lag,
            }))
        }
    }))
}

/// Sets the outbox gauges of `schema` (label `service`, the service's name) and returns them.
pub async fn outbox_gauges(ctx: &Context, schema: &str) -> anyhow::Result<(i64, f64)> {
    let (unpublished, lag) = crate::db::outbox_backlog(&ctx.pool, schema).await?;
    let service = crate::metrics::service_of_schema(schema);
    crate::metrics::OUTBOX_UNPUBLISHED.set(&[service], unpublished as f64);
    crate::metrics::OUTBOX_LAG.set(&[service], lag);
    Ok((unpublished, lag))
}

/// One relay pass: at most `limit` rows older than 5 s. Returns how many were published.
/// Rows the broker returns as unroutable stay unpublished (the outbox lag shows them) and
/// do not hold back the others: a missing binding is fixed by an operator, not by retrying.
pub async fn relay_once(ctx: &Context, schema: &str, limit: i64) -> anyhow::Result<usize> {
    relay_older_than(ctx, schema, std::time::Duration::from_secs(5), limit).await
}

/// `relay_once` with a chosen minimum age (tests relay at once instead of waiting).
pub async fn relay_older_than(
    ctx: &Context,
    schema: &str,
    min_age: std::time::Duration,
    limit: i64,
) -> anyhow::Result<usize> {
    crate::db::outbox_relay(
        &ctx.pool,
        schema,
        min_age,
        limit,
        async |events| {
            let msgs: Vec<_> = events
                .iter()
                .map(|e| {
                    crate::publisher::OutMessage::event(&ctx.names, e, ctx.config.wire_encoding)
                })
                .collect();
            match ctx.publisher.publish(&msgs).await {
                Ok(()) => Ok(Vec::new()),
                Err(e @ crate::publisher::PublishError::Unroutable { .. }) => {
                    let ids: Vec<uuid::Uuid> = events.iter().map(crate::Envelope::event_uuid).collect();
                    let routed = e.routed(&ids);
                    tracing::error!(schema, error = %e, "outbox rows nobody is bound to stay unpublished");
                    Ok(ids.into_iter().filter(|id| !routed.contains(id)).collect())
                }
                Err(e) => Err(anyhow::Error::new(e)),
            }
        },
    )
    .await
}
