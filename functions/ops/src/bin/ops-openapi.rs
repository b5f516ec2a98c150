//! Lambda entry point of `ops-openapi` (trigger: HTTP GET /openapi.json).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(ops::openapi::openapi).await
}
