//! Lambda entry point of `payment-process` (trigger: queue payment-process <- order.created).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(payment::functions::process).await
}
