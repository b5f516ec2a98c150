//! Lambda entry point of `order-relay` (trigger: schedule; outbox relay).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(order::functions::relay).await
}
