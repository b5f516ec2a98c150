//! Lambda entry point of `notification-send` (trigger: queue notification-send).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(notification::functions::send).await
}
