//! Lambda entry point of `payment-refund` (trigger: queue payment-refund <- refund.requested).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(payment::functions::refund).await
}
