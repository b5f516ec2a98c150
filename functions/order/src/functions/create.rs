//! `order-create` (HTTP `POST /orders`): validates and prices the order, then writes it,
//! its idempotency record and `order.created` in one transaction, and publishes after commit.
//! A W3C `traceparent` request header makes the order's trace a child of the caller's.
//! The payment token leaves here sealed for the payment service (`shared::payment_token`);
//! the order keeps only its reference.

use crate::admission::{AdmissionControl, Decision};
use crate::domain::pricing::{self, PricedOrder, PricingError};
use crate::domain::request::{IdempotencyKey, OrderRequest, ValidOrder};
use crate::pg::idempotency::{self, StoredResponse};
use crate::pg::{catalog, orders};
use shared::context::Context;
use shared::contracts::{OrderCreated, OrderLine, Payload};
use shared::http::{ApiError, Request, Response, authenticate, header, json_body, json_response};
use shared::payment_token::{self, TokenKeys};
use shared::ratelimit::{Rule, WhenRedisDown, enforce};
use shared::session::Session;
use shared::{Envelope, Function};
use std::sync::Arc;
use tracing::Instrument as _;
use uuid::Uuid;

pub const ROUTE: &str = "POST /orders";

struct CreateOrder {
    ctx: Context,
    admission: AdmissionControl,
    keys: TokenKeys,
}

pub fn create(ctx: &Context) -> Arc<dyn Function> {
    let keys = match TokenKeys::from_config(&ctx.config) {
        Ok(keys) => keys,
        Err(e) => return shared::lambda::misconfigured("order-create", e),
    };
    let admission = AdmissionControl::new(
        ctx.pool.clone(),
        ctx.config.admission,
        ctx.config.pending_timeout,
    );
    let state = Arc::new(CreateOrder {
        ctx: ctx.clone(),
        admission,
        keys,
    });
    Arc::new(shared::lambda::HttpFunction(move |req| {
        let s = state.clone();
        async move { s.handle(req).await }
    }))
}

fn pricing_error(e: PricingError) -> ApiError {
    let code = match e {
        PricingError::UnknownProducts(_) => "unknown_product",
        PricingError::MixedCurrency(_) => "mixed_currency",
        PricingError::Overflow => "invalid_request",
        PricingError::Discontinued(_) => "discontinued_product",
    };
    ApiError::new(422, code, e.to_string())
}

/// The stored answer for a replayed key, or 422 when the key came with another body.
fn replay(stored: StoredResponse, request_hash: &str) -> Result<Response, ApiError> {
    if stored.request_hash != request_hash {
        return Err(ApiError::new(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request body",
        ));
    }
    Ok(json_response(stored.status_code, &stored.response))
}

impl CreateOrder {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        if req.route_key.as_deref() != Some(ROUTE) {
            return Err(ApiError::not_found("route"));
        }
        let session = authenticate(&self.ctx.sessions, &req).await?;
        // Redis answered the session check just now; if it fails here the order is refused
        // (503) rather than placed unlimited.
        enforce(
            &self.ctx.limiter,
            &[(Rule::OrdersPerUser, &session.user_id.to_string())],
            WhenRedisDown::Refuse,
        )
        .await?;
        let body: OrderRequest = json_body(&req)?;
        let order = ValidOrder::try_from(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let key = match req.headers.get("idempotency-key") {
            None => None,
            Some(raw) => Some(IdempotencyKey::parse(raw.as_bytes()).ok_or_else(|| {
                ApiError::bad_request(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters (0x21-0x7E)",
                )
            })?),
        };
        let request_hash = order.request_hash();
        if let Some(key) = &key
            && let Some(stored) =
                idempotency::find(&self.ctx.pool, session.user_id, key.as_str()).await?
        {
            return replay(stored, &request_hash);
        }
        // After the replay: a retry of an order already accepted gets its answer, not a 503.
        if let Decision::Refuse { retry_after_secs } = self.admission.check().await? {
            tracing::warn!(
                retry_after_secs,
                "order refused: the backlog could not be decided before the deadline"
            );
            return Err(ApiError::new(
                503,
                "overloaded",
                "too many orders are waiting to be decided; nothing was created, retry later with the same Idempotency-Key",
            )
            .with_retry_after(retry_after_secs));
        }
        let prices = catalog::prices(&self.ctx.pool, &order.product_ids()).await?;
        let priced = pricing::price(&order, &prices).map_err(pricing_error)?;
        let order_id = Uuid::now_v7();
        let created = order_created(
            &self.keys,
            order_id,
            &session,
            &order,
            &priced,
            header(&req, "traceparent"),
        );
        // Every log line about this order, the publish included, carries its ids.
        let span = tracing::info_span!(
            "order",
            %order_id,
            event_id = %created.event_id,
            traceparent = %created.traceparent,
        );
        self.insert(
            created,
            &session,
            &order,
            &priced,
            key.as_ref(),
            &request_hash,
        )
        .instrument(span)
        .await
    }

    async fn insert(
        &self,
        created: Envelope,
        session: &Session,
        order: &ValidOrder,
        priced: &PricedOrder,
        key: Option<&IdempotencyKey>,
        request_hash: &str,
    ) -> Result<Response, ApiError> {
        let order_id = Uuid::parse_str(&created.correlation_id).unwrap_or_default();
        let answer = serde_json::json!({ "order_id": order_id, "status": "PENDING" });
        let traceparent = created.traceparent.clone();
        let events = vec![created];
        let mut tx = self.ctx.pool.begin().await?;
        // The key is claimed first: a concurrent request with the same key waits here for
        // ours to finish, then finds it taken and answers from what we stored.
        if let Some(key) = key
            && !idempotency::claim(
                &mut tx,
                session.user_id,
                key.as_str(),
                request_hash,
                202,
                &answer,
            )
            .await?
        {
            tx.rollback().await?;
            let stored = idempotency::find(&self.ctx.pool, session.user_id, key.as_str())
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        409,
                        "conflict",
                        "a concurrent request with this Idempotency-Key failed, retry",
                    )
                })?;
            return replay(stored, request_hash);
        }
        let payment_ref = payment_token::reference(order.payment_token.as_str());
        let new = orders::NewOrder {
            order_id,
            user_id: session.user_id,
            customer_email: &session.email,
            priced,
            payment_ref: &payment_ref,
            pending_timeout: self.ctx.config.pending_timeout,
            traceparent: &traceparent,
            shipping_address: order.shipping_address.as_ref(),
        };
        orders::insert(&mut tx, &new).await?;
        shared::db::outbox_insert(&mut tx, crate::SCHEMA, &events).await?;
        tx.commit().await?;
        tracing::info!(%order_id, user_id = %session.user_id, total_cents = priced.total_cents, "order accepted");
        self.ctx.publish_committed(crate::SCHEMA, &events).await;
        Ok(json_response(202, &answer))
    }
}

fn order_created(
    keys: &TokenKeys,
    order_id: Uuid,
    session: &Session,
    order: &ValidOrder,
    priced: &PricedOrder,
    caller_trace: Option<&str>,
) -> Envelope {
    let mut created = Envelope::new(
        Payload::OrderCreated(OrderCreated {
            order_id: order_id.to_string(),
            user_id: session.user_id.to_string(),
            customer_email: session.email.clone(),
            items: priced
                .lines
                .iter()
                .map(|l| OrderLine {
                    product_id: l.product_id.clone(),
                    quantity: l.quantity,
                    unit_price_cents: l.unit_price_cents,
                })
                .collect(),
            total_cents: priced.total_cents,
            currency: priced.currency.clone(),
            // Sealed for payment-process; every other reader gets the reference only.
            payment_token: String::new(),
            payment_token_sealed: keys.seal(&order_id.to_string(), order.payment_token.as_str()),
            payment_ref: payment_token::reference(order.payment_token.as_str()),
        }),
        None,
    );
    if let Some(parent) = caller_trace.filter(|t| shared::telemetry::parse_traceparent(t).is_some())
    {
        created.traceparent = shared::telemetry::child_traceparent(parent);
    }
    created
}
