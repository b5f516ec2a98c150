//! Lambda entry point of `inventory-reserve` (trigger: queue inventory-reserve <- order.created).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(inventory::functions::reserve).await
}
