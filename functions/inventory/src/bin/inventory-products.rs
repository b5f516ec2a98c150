//! Lambda entry point of `inventory-products` (trigger: HTTP GET /products, GET /products/{id}/stock, GET /stock).
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(inventory::functions::products).await
}
