//! Lambda entry point of `identity-login` (trigger: HTTP POST /sessions).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(identity::functions::login).await
}
