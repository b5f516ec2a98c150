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
        let report = self.0.run(&event).await?;
        Ok(serde_json::to_value(report)?)
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
pub async fn serve(constructor: Constructor) -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init();
    let config = crate::Config::from_env()?;
    let ctx = Context::new(config)?;
    let function = constructor(&ctx);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
            let function = function.clone();
            async move { function.invoke(event.payload).await }
        },
    ))
    .await
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
            Ok(serde_json::json!({ "published": total }))
        }
    }))
}

/// One relay pass: at most `limit` rows older than 5 s. Returns how many were published.
pub async fn relay_once(ctx: &Context, schema: &str, limit: i64) -> anyhow::Result<usize> {
    crate::db::outbox_relay(
        &ctx.pool,
        schema,
        std::time::Duration::from_secs(5),
        limit,
        async |events| {
            let msgs: Vec<_> = events
                .iter()
                .map(|e| {
                    crate::publisher::OutMessage::event(&ctx.names, e, ctx.config.wire_encoding)
                })
                .collect();
            ctx.publisher
                .publish(&msgs)
                .await
                .map_err(anyhow::Error::new)
        },
    )
    .await
}
