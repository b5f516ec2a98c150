//! Lambda entry point of `order-saga` (trigger: queue order-saga).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(order::functions::saga).await
}
