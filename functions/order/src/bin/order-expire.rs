//! Lambda entry point of `order-expire` (trigger: schedule rate(1 minute)).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(order::functions::expire).await
}
