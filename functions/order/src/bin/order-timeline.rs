//! Lambda entry point of `order-timeline` (trigger: queue order-timeline, bound to `#`).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(order::functions::timeline).await
}
