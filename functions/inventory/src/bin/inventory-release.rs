//! Lambda entry point of `inventory-release` (trigger: queue inventory-release <- order.cancelled).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(inventory::functions::release).await
}
