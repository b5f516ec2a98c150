//! Lambda entry point of `payment-relay` (trigger: schedule; outbox relay).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(payment::functions::relay).await
}
