//! `inventory-admin`: the catalog back office over HTTP, for admins only (401 without a
//! session, 403 for a customer). Each write runs in one transaction with its events in the
//! outbox (`crate::backoffice`), publishes them after the commit and refreshes the stock
//! cache.

use crate::backoffice::{self, CatalogError, Written};
use crate::product::{
    Adjustment, AdjustmentRequest, IfMatch, NewProduct, NewProductRequest, PatchRequest,
    ProductPatch, etag,
};
use crate::stock_cache::RedisStockCache;
use shared::context::Context;
use shared::http::{
    ApiError, Request, Response, authenticate_admin, header, json_body, json_response, path_param,
};
use tracing::Instrument as _;

pub const CREATE: &str = "POST /admin/products";
pub const PATCH: &str = "PATCH /admin/products/{id}";
pub const ADJUST: &str = "POST /admin/products/{id}/stock-adjustments";

pub struct AdminApi {
    ctx: Context,
    cache: RedisStockCache,
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let message = e.to_string();
        match e {
            CatalogError::Exists(_) => ApiError::new(409, "product_exists", message),
            CatalogError::NotFound(_) => ApiError::new(404, "not_found", message),
            CatalogError::VersionMismatch { .. } => ApiError::new(412, "version_mismatch", message),
            CatalogError::AdjustmentReused(_) => {
                ApiError::new(422, "idempotency_key_reused", message)
            }
            CatalogError::InsufficientStock { .. } => {
                ApiError::new(409, "insufficient_stock", message)
            }
            CatalogError::Database(e) => ApiError::from(e),
        }
    }
}

fn product_id(req: &Request) -> Result<&str, ApiError> {
    let id = path_param(req, "id").ok_or_else(|| ApiError::bad_request("missing product id"))?;
    if !shared::product::valid_product_id(id) {
        return Err(ApiError::bad_request(format!(
            "invalid product id: {}",
            shared::product::PRODUCT_ID_RULE
        )));
    }
    Ok(id)
}

fn with_etag(mut resp: Response, version: i64) -> Response {
    if let Ok(value) = aws_lambda_events::http::HeaderValue::from_str(&etag(version)) {
        resp.headers
            .insert(aws_lambda_events::http::header::ETAG, value);
    }
    resp
}

impl AdminApi {
    pub fn new(ctx: &Context) -> Self {
        AdminApi {
            ctx: ctx.clone(),
            cache: RedisStockCache::from_context(ctx),
        }
    }

    pub async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        let route = req
            .route_key
            .as_deref()
            .or(req.request_context.route_key.as_deref())
            .unwrap_or("")
            .to_string();
        if ![CREATE, PATCH, ADJUST].contains(&route.as_str()) {
            return Err(ApiError::not_found(&format!("route {route:?}")));
        }
        let admin = authenticate_admin(&self.ctx.sessions, &req).await?;
        let span = tracing::info_span!("admin", route = %route, admin = %admin.user_id);
        async {
            match route.as_str() {
                CREATE => self.create(&req).await,
                PATCH => self.patch(&req).await,
                _ => self.adjust(&req).await,
            }
        }
        .instrument(span)
        .await
    }

    /// Commits the transaction's writes, then publishes their events and refreshes the cache.
    async fn finish(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        written: Written,
    ) -> Result<(), ApiError> {
        shared::db::outbox_insert(&mut tx, crate::SCHEMA, &written.events).await?;
        tx.commit().await?;
        self.ctx
            .publish_committed(crate::SCHEMA, &written.events)
            .await;
        self.cache.refresh(&written.figures).await;
        Ok(())
    }

    async fn create(&self, req: &Request) -> Result<Response, ApiError> {
        let body: NewProductRequest = json_body(req)?;
        let new = NewProduct::try_from(body).map_err(ApiError::bad_request)?;
        let mut tx = self.ctx.pool.begin().await?;
        let mut written = Written::default();
        let product = backoffice::create(&mut tx, &new, &mut written).await?;
        self.finish(tx, written).await?;
        tracing::info!(product_id = %product.product_id, "product created");
        Ok(with_etag(json_response(201, &product), product.version))
    }

    async fn patch(&self, req: &Request) -> Result<Response, ApiError> {
        let id = product_id(req)?;
        let raw = header(req, "if-match").ok_or_else(|| {
            ApiError::new(
                428,
                "if_match_required",
                "PATCH needs If-Match: \"<version>\" (the product's ETag)",
            )
        })?;
        let if_match = IfMatch::parse(raw).ok_or_else(|| {
            ApiError::bad_request(
                "If-Match must be \"<version>\" (a strong ETag), a list of them, or *",
            )
        })?;
        let body: PatchRequest = json_body(req)?;
        let patch = ProductPatch::try_from(body).map_err(ApiError::bad_request)?;
        let mut tx = self.ctx.pool.begin().await?;
        let mut written = Written::default();
        let product = backoffice::update(&mut tx, id, &if_match, &patch, &mut written).await?;
        self.finish(tx, written).await?;
        Ok(with_etag(json_response(200, &product), product.version))
    }

    async fn adjust(&self, req: &Request) -> Result<Response, ApiError> {
        let id = product_id(req)?;
        let body: AdjustmentRequest = json_body(req)?;
        let adj = Adjustment::try_from(body).map_err(ApiError::bad_request)?;
        let mut tx = self.ctx.pool.begin().await?;
        let mut written = Written::default();
        let (outcome, applied) = backoffice::adjust(&mut tx, id, &adj, &mut written).await?;
        self.finish(tx, written).await?;
        tracing::info!(product_id = %id, adjustment_id = %adj.adjustment_id, applied, "stock adjustment");
        Ok(json_response(if applied { 201 } else { 200 }, &outcome))
    }
}
