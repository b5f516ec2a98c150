//! Lambda entry point of `order-cancel` (trigger: HTTP POST /orders/{id}/cancel).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(order::functions::cancel).await
}
