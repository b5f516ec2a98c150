//! `order-cancel` (HTTP `POST /orders/{id}/cancel`): the owner cancels their order. A
//! PENDING or CONFIRMED order becomes CANCELLED(customer_cancelled) through the saga, under
//! the same row lock as the saga's own steps, and `order.cancelled` goes out in the same
//! transaction: downstream then releases the stock and voids (PENDING) or refunds
//! (CONFIRMED) the payment, as it does after an expiry. A retried cancel gets the same
//! answer; a shipped, delivered or otherwise cancelled order is 409 `not_cancellable`.

use crate::apply::apply_input;
use crate::domain::saga::{Input, Reason, Status};
use crate::pg::orders::{self, LoadError};
use shared::Function;
use shared::context::Context;
use shared::http::{ApiError, Request, Response, authenticate, json_response, path_param};
use std::sync::Arc;
use tracing::Instrument as _;
use uuid::Uuid;

pub const ROUTE: &str = "POST /orders/{id}/cancel";

struct CancelOrder {
    ctx: Context,
}

pub fn cancel(ctx: &Context) -> Arc<dyn Function> {
    let state = Arc::new(CancelOrder { ctx: ctx.clone() });
    Arc::new(shared::lambda::HttpFunction(move |req| {
        let s = state.clone();
        async move { s.handle(req).await }
    }))
}

/// A locked order's load error as an answer: our own unreadable row is a 500, not the
/// client's fault.
pub(crate) fn load_error(e: LoadError) -> ApiError {
    match e {
        LoadError::Db(e) => e.into(),
        LoadError::Corrupt(e) => {
            tracing::error!(error = %e, "unreadable order row");
            ApiError::internal()
        }
    }
}

fn answer(order_id: Uuid) -> Response {
    json_response(
        200,
        &serde_json::json!({
            "order_id": order_id,
            "status": Status::Cancelled.as_str(),
            "reason": Reason::CustomerCancelled.as_str(),
        }),
    )
}

impl CancelOrder {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        if req.route_key.as_deref() != Some(ROUTE) {
            return Err(ApiError::not_found("route"));
        }
        let session = authenticate(&self.ctx.sessions, &req).await?;
        let Some(order_id) = path_param(&req, "id").and_then(|id| Uuid::parse_str(id).ok()) else {
            return Err(ApiError::not_found("order"));
        };
        self.cancel(order_id, session.user_id)
            .instrument(tracing::info_span!("order", %order_id))
            .await
    }

    async fn cancel(&self, order_id: Uuid, user_id: Uuid) -> Result<Response, ApiError> {
        let mut tx = self.ctx.pool.begin().await?;
        // Someone else's order is as unknown as a missing one (ids cannot be probed).
        let order = orders::lock(&mut tx, order_id)
            .await
            .map_err(load_error)?
            .filter(|o| o.user_id == user_id)
            .ok_or_else(|| ApiError::not_found("order"))?;
        let state = order.state;
        if state.status == Status::Cancelled && state.reason == Some(Reason::CustomerCancelled) {
            // A retried cancel: the first one did it.
            return Ok(answer(order_id));
        }
        let Some(decided) = apply_input(&mut tx, &order, Input::CustomerCancel, None).await? else {
            let why = match (state.status, state.reason) {
                (Status::Cancelled, Some(reason)) => {
                    format!("the order is already cancelled ({reason})")
                }
                (status, _) => format!(
                    "the order is {status}: only a PENDING or CONFIRMED order can be cancelled"
                ),
            };
            return Err(ApiError::new(409, "not_cancellable", why));
        };
        let events = vec![decided.event];
        shared::db::outbox_insert(&mut tx, crate::SCHEMA, &events).await?;
        tx.commit().await?;
        tracing::info!(from = %state.status, "order cancelled by its customer");
        if state.status == Status::Pending {
            // A saga decision like any other; a cancel after confirmation is not one.
            decided.timing.observe();
        }
        self.ctx.publish_committed(crate::SCHEMA, &events).await;
        Ok(answer(order_id))
    }
}
