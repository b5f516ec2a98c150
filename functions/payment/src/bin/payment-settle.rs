//! Lambda entry point of `payment-settle` (trigger: queue payment-settle <- order.confirmed, order.cancelled).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(payment::functions::settle).await
}
