//! Lambda entry point of `inventory-admin` (trigger: HTTP POST /admin/products, PATCH /admin/products/{id}, POST /admin/products/{id}/stock-adjustments).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(inventory::functions::admin).await
}
