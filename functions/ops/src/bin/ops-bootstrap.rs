//! Lambda entry point of `ops-bootstrap` (the stack's bootstrap custom resource). It wires
//! its own runtime loop rather than `shared::lambda::serve`: it needs each invocation's
//! deadline, and a configuration it cannot read must still be answered as FAILED to
//! CloudFormation instead of failing the init phase (which would leave the stack waiting).
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let config = shared::secrets::config_from_env()
        .await
        .map_err(|e| format!("{e:#}"));
    let http = reqwest::Client::new();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (config, http) = (config.clone(), http.clone());
        async move {
            let budget = ops::bootstrap::budget_until(event.context.deadline());
            ops::bootstrap::handle(event.payload, config, budget, &http).await
        }
    }))
    .await
}
