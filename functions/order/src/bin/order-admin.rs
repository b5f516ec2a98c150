//! Lambda entry point of `order-admin` (trigger: HTTP POST /admin/orders/{id}/ship, /deliver, /refunds).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(order::functions::admin).await
}
