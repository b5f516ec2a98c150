//! `order-get` (HTTP `GET /orders/{id}`): the caller's own order with its items and
//! timeline; anyone else's, or a malformed id, is 404.

use crate::pg::views;
use shared::Function;
use shared::context::Context;
use shared::http::{ApiError, Request, Response, authenticate, json_response, path_param};
use std::sync::Arc;
use tracing::Instrument as _;

pub const ROUTE: &str = "GET /orders/{id}";

struct GetOrder {
    ctx: Context,
}

pub fn get(ctx: &Context) -> Arc<dyn Function> {
    let state = Arc::new(GetOrder { ctx: ctx.clone() });
    Arc::new(shared::lambda::HttpFunction(move |req| {
        let s = state.clone();
        async move { s.handle(req).await }
    }))
}

impl GetOrder {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        if req.route_key.as_deref() != Some(ROUTE) {
            return Err(ApiError::not_found("route"));
        }
        let session = authenticate(&self.ctx.sessions, &req).await?;
        let Some(order_id) = path_param(&req, "id").and_then(|id| uuid::Uuid::parse_str(id).ok())
        else {
            return Err(ApiError::not_found("order"));
        };
        let view = views::order_for_owner(&self.ctx.pool, order_id, session.user_id)
            .instrument(tracing::info_span!("order", %order_id))
            .await?
            .ok_or_else(|| ApiError::not_found("order"))?;
        Ok(json_response(200, &view))
    }
}
