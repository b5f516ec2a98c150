//! `order-get` (HTTP `GET /orders/{id}` and `GET /orders`): the caller's own order with its
//! items and timeline, anyone else's, or a malformed id, being 404; and the caller's order
//! history, newest first, a page at a time.

use crate::domain::history::{self, HistoryQuery};
use crate::pg::views;
use shared::Function;
use shared::context::Context;
use shared::http::{
    ApiError, Request, Response, authenticate, json_response, path_param, query_param,
};
use std::sync::Arc;
use tracing::Instrument as _;

pub const ROUTE: &str = "GET /orders/{id}";
pub const LIST_ROUTE: &str = "GET /orders";

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
        match req.route_key.as_deref() {
            Some(ROUTE) => self.one(req).await,
            Some(LIST_ROUTE) => self.list(req).await,
            _ => Err(ApiError::not_found("route")),
        }
    }

    async fn list(&self, req: Request) -> Result<Response, ApiError> {
        let session = authenticate(&self.ctx.sessions, &req).await?;
        let query = HistoryQuery::parse(
            query_param(&req, "limit"),
            query_param(&req, "status"),
            query_param(&req, "cursor"),
        )
        .map_err(ApiError::bad_request)?;
        let (orders, more) = crate::pg::history::page(
            &self.ctx.pool,
            session.user_id,
            query.status,
            query.before,
            query.limit,
        )
        .await?;
        let next_cursor = orders
            .last()
            .filter(|_| more)
            .map(|last| history::encode(last.order_id, query.status));
        Ok(json_response(
            200,
            &serde_json::json!({ "orders": orders, "next_cursor": next_cursor }),
        ))
    }

    async fn one(&self, req: Request) -> Result<Response, ApiError> {
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
