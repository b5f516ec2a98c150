//! Lambda entry point of `identity-logout` (trigger: HTTP DELETE /sessions/current).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(identity::functions::logout).await
}
