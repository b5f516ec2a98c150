//! Lambda entry point of `order-create` (trigger: HTTP POST /orders).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(order::functions::create).await
}
