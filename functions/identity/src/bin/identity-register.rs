//! Lambda entry point of `identity-register` (trigger: HTTP POST /users).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(identity::functions::register).await
}
