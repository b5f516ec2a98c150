//! Lambda entry point of `identity-authorize` (the HTTP API's Lambda authorizer).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(identity::authorize::authorize).await
}
