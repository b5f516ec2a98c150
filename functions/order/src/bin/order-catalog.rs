//! Lambda entry point of `order-catalog` (trigger: queue order-catalog).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(order::functions::catalog).await
}
