//! Lambda entry point of `notification-relay` (trigger: schedule; outbox relay).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(notification::functions::relay).await
}
