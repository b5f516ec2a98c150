//! Lambda entry point of `inventory-relay` (trigger: schedule; outbox relay).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(inventory::functions::relay).await
}
