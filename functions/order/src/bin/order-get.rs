//! Lambda entry point of `order-get` (trigger: HTTP GET /orders/{id}).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(order::functions::get).await
}
