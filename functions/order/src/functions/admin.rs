//! `order-admin` (HTTP, admins only): the back office of an order after its decision.
//! - `POST /admin/orders/{id}/ship` `{"carrier","tracking_number"}`: CONFIRMED -> SHIPPED,
//!   `order.shipped` with the lines.
//! - `POST /admin/orders/{id}/deliver`: SHIPPED -> DELIVERED, `order.delivered`.
//! - `POST /admin/orders/{id}/refunds` (`Idempotency-Key` required): a partial or full
//!   refund by amount or by lines, written as a `requested` refund with `refund.requested`;
//!   the payment service pays it back and reports `payment.refunded` / `.refund_failed`.
//!
//! Each runs under the order's row lock (the saga's and the customer's cancel's too), and
//! its event goes to the outbox in the same transaction.

use super::cancel::load_error;
use crate::domain::fulfilment::{self, Refused, ShipRequest, Shipment, Step};
use crate::domain::refund::{self, RefundRequest, ValidRefund};
use crate::domain::request::IdempotencyKey;
use crate::pg::idempotency::{self, StoredResponse};
use crate::pg::lifecycle::{self, NewRefund, ShipmentRow};
use crate::pg::orders::{self, LockedOrder};
use shared::context::Context;
use shared::contracts::{OrderDelivered, OrderLine, OrderShipped, Payload, RefundRequested};
use shared::http::{
    ApiError, Request, Response, authenticate_admin, json_body, json_response, path_param,
};
use shared::session::Session;
use shared::{Envelope, Function};
use sqlx::PgConnection;
use std::sync::Arc;
use tracing::Instrument as _;
use uuid::Uuid;

pub const SHIP: &str = "POST /admin/orders/{id}/ship";
pub const DELIVER: &str = "POST /admin/orders/{id}/deliver";
pub const REFUNDS: &str = "POST /admin/orders/{id}/refunds";

struct OrderAdmin {
    ctx: Context,
}

pub fn admin(ctx: &Context) -> Arc<dyn Function> {
    let state = Arc::new(OrderAdmin { ctx: ctx.clone() });
    Arc::new(shared::lambda::HttpFunction(move |req| {
        let s = state.clone();
        async move { s.handle(req).await }
    }))
}

/// An event of the order with no causing event: it continues the order's own trace.
fn order_event(order: &LockedOrder, payload: Payload) -> Envelope {
    let mut event = Envelope::new(payload, None);
    if shared::telemetry::parse_traceparent(&order.traceparent).is_some() {
        event.traceparent = shared::telemetry::child_traceparent(&order.traceparent);
    }
    event
}

fn shipment_answer(order_id: Uuid, status: &str, s: &ShipmentRow) -> Response {
    json_response(
        200,
        &serde_json::json!({
            "order_id": order_id,
            "status": status,
            "carrier": s.carrier,
            "tracking_number": s.tracking_number,
            "shipped_at": s.shipped_at,
            "delivered_at": s.delivered_at,
        }),
    )
}

fn refused(Refused(code): Refused, order: &LockedOrder, what: &str) -> ApiError {
    ApiError::new(
        409,
        code,
        format!("the order is {}: {what}", order.state.status),
    )
}

/// A step's answer needs its shipment; a SHIPPED or DELIVERED row without one is our bug.
fn stored_shipment(s: Option<ShipmentRow>) -> Result<ShipmentRow, ApiError> {
    s.ok_or_else(|| {
        tracing::error!("a shipped order has no shipment columns");
        ApiError::internal()
    })
}

/// The stored answer for a replayed refund key, or 422 when the key came with another body.
fn replay(stored: StoredResponse, request_hash: &str) -> Result<Response, ApiError> {
    if stored.request_hash != request_hash {
        return Err(ApiError::new(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different refund",
        ));
    }
    Ok(json_response(stored.status_code, &stored.response))
}

async fn lock(conn: &mut PgConnection, order_id: Uuid) -> Result<LockedOrder, ApiError> {
    orders::lock(conn, order_id)
        .await
        .map_err(load_error)?
        .ok_or_else(|| ApiError::not_found("order"))
}

impl OrderAdmin {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        let route = req.route_key.clone().unwrap_or_default();
        if ![SHIP, DELIVER, REFUNDS].contains(&route.as_str()) {
            return Err(ApiError::not_found("route"));
        }
        let admin = authenticate_admin(&self.ctx.sessions, &req).await?;
        let Some(order_id) = path_param(&req, "id").and_then(|id| Uuid::parse_str(id).ok()) else {
            return Err(ApiError::not_found("order"));
        };
        let span = tracing::info_span!("order", %order_id, admin = %admin.user_id);
        match route.as_str() {
            SHIP => {
                let body: ShipRequest = json_body(&req)?;
                let shipment =
                    Shipment::try_from(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
                self.ship(order_id, &shipment).instrument(span).await
            }
            DELIVER => self.deliver(order_id).instrument(span).await,
            _ => {
                let key = match req.headers.get("idempotency-key") {
                    None => {
                        return Err(ApiError::bad_request(
                            "an Idempotency-Key header is required for a refund",
                        ));
                    }
                    Some(raw) => IdempotencyKey::parse(raw.as_bytes()).ok_or_else(|| {
                        ApiError::bad_request(
                            "Idempotency-Key must be 1 to 255 visible ASCII characters (0x21-0x7E)",
                        )
                    })?,
                };
                let body: RefundRequest = json_body(&req)?;
                let refund = ValidRefund::try_from(body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                self.refund(order_id, &admin, &key, &refund)
                    .instrument(span)
                    .await
            }
        }
    }

    async fn ship(&self, order_id: Uuid, shipment: &Shipment) -> Result<Response, ApiError> {
        let mut tx = self.ctx.pool.begin().await?;
        let order = lock(&mut tx, order_id).await?;
        let current = lifecycle::shipment(&mut tx, order_id).await?;
        let step = fulfilment::ship(
            order.state.status,
            current.as_ref().map(ShipmentRow::shipment).as_ref(),
            shipment,
        )
        .map_err(|r| refused(r, &order, "only a CONFIRMED order can be shipped (a shipped one only with the same carrier and tracking number)"))?;
        if step == Step::Repeat {
            return Ok(shipment_answer(
                order_id,
                "SHIPPED",
                &stored_shipment(current)?,
            ));
        }
        let shipped = stored_shipment(lifecycle::mark_shipped(&mut tx, order_id, shipment).await?)?;
        let items = lifecycle::lines(&mut tx, order_id)
            .await?
            .into_iter()
            .map(|l| OrderLine {
                product_id: l.product_id,
                quantity: u32::try_from(l.quantity).unwrap_or(0),
                unit_price_cents: l.unit_price_cents,
            })
            .collect();
        let events = vec![order_event(
            &order,
            Payload::OrderShipped(OrderShipped {
                order_id: order_id.to_string(),
                user_id: order.user_id.to_string(),
                customer_email: order.customer_email.clone(),
                carrier: shipment.carrier.clone(),
                tracking_number: shipment.tracking_number.clone(),
                items,
            }),
        )];
        shared::db::outbox_insert(&mut tx, crate::SCHEMA, &events).await?;
        tx.commit().await?;
        tracing::info!(carrier = %shipment.carrier, "order shipped");
        self.ctx.publish_committed(crate::SCHEMA, &events).await;
        Ok(shipment_answer(order_id, "SHIPPED", &shipped))
    }

    async fn deliver(&self, order_id: Uuid) -> Result<Response, ApiError> {
        let mut tx = self.ctx.pool.begin().await?;
        let order = lock(&mut tx, order_id).await?;
        let step = fulfilment::deliver(order.state.status)
            .map_err(|r| refused(r, &order, "only a SHIPPED order can be delivered"))?;
        if step == Step::Repeat {
            let current = lifecycle::shipment(&mut tx, order_id).await?;
            return Ok(shipment_answer(
                order_id,
                "DELIVERED",
                &stored_shipment(current)?,
            ));
        }
        let delivered = stored_shipment(lifecycle::mark_delivered(&mut tx, order_id).await?)?;
        let events = vec![order_event(
            &order,
            Payload::OrderDelivered(OrderDelivered {
                order_id: order_id.to_string(),
                user_id: order.user_id.to_string(),
                customer_email: order.customer_email.clone(),
            }),
        )];
        shared::db::outbox_insert(&mut tx, crate::SCHEMA, &events).await?;
        tx.commit().await?;
        tracing::info!("order delivered");
        self.ctx.publish_committed(crate::SCHEMA, &events).await;
        Ok(shipment_answer(order_id, "DELIVERED", &delivered))
    }

    async fn refund(
        &self,
        order_id: Uuid,
        admin: &Session,
        key: &IdempotencyKey,
        refund: &ValidRefund,
    ) -> Result<Response, ApiError> {
        let request_hash = refund.request_hash();
        // A client key holds no space: this scope cannot meet an order-create key.
        let scoped = format!("refund {order_id} {}", key.as_str());
        let mut tx = self.ctx.pool.begin().await?;
        let order = lock(&mut tx, order_id).await?;
        // Under the order's lock: a concurrent request with the same key has committed (or
        // rolled back) by now, so a replay sees its answer rather than refunding twice or
        // being told the money is already refunded.
        if let Some(stored) = idempotency::find_in(&mut tx, admin.user_id, &scoped).await? {
            return replay(stored, &request_hash);
        }
        if !refund::refundable(order.state.status) {
            return Err(ApiError::new(
                409,
                "not_refundable",
                format!(
                    "the order is {}: only a CONFIRMED, SHIPPED or DELIVERED order can be refunded",
                    order.state.status
                ),
            ));
        }
        let bought = lifecycle::lines(&mut tx, order_id).await?;
        let prior = lifecycle::prior_refunds(&mut tx, order_id).await?;
        let planned = refund::plan(order.total_cents, &bought, &prior, refund)
            .map_err(|e| ApiError::new(422, "exceeds_refundable", e.to_string()))?;
        let refund_id = Uuid::now_v7();
        let answer = serde_json::json!({
            "refund_id": refund_id,
            "order_id": order_id,
            "amount_cents": planned.amount_cents,
            "currency": order.currency,
            "status": "requested",
        });
        if !idempotency::claim(&mut tx, admin.user_id, &scoped, &request_hash, 202, &answer).await?
        {
            // Not reachable while the order's lock is held; answered safely all the same.
            tx.rollback().await?;
            let stored = idempotency::find(&self.ctx.pool, admin.user_id, &scoped)
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        409,
                        "conflict",
                        "a concurrent request with this Idempotency-Key failed, retry",
                    )
                })?;
            return replay(stored, &request_hash);
        }
        lifecycle::insert_refund(
            &mut tx,
            &NewRefund {
                refund_id,
                order_id,
                amount_cents: planned.amount_cents,
                currency: &order.currency,
                lines: &planned.lines,
                restock: refund.restock,
                reason: &refund.reason,
                requested_by: admin.user_id,
            },
        )
        .await?;
        let events = vec![order_event(
            &order,
            Payload::RefundRequested(RefundRequested {
                order_id: order_id.to_string(),
                refund_id: refund_id.to_string(),
                amount_cents: planned.amount_cents,
                currency: order.currency.clone(),
                items: planned
                    .lines
                    .iter()
                    .map(|l| OrderLine {
                        product_id: l.product_id.clone(),
                        quantity: u32::try_from(l.quantity).unwrap_or(0),
                        unit_price_cents: l.unit_price_cents,
                    })
                    .collect(),
                restock: refund.restock,
                reason: refund.reason.clone(),
                user_id: order.user_id.to_string(),
                customer_email: order.customer_email.clone(),
            }),
        )];
        shared::db::outbox_insert(&mut tx, crate::SCHEMA, &events).await?;
        tx.commit().await?;
        tracing::info!(%refund_id, amount_cents = planned.amount_cents, restock = refund.restock, "refund requested");
        self.ctx.publish_committed(crate::SCHEMA, &events).await;
        Ok(json_response(202, &answer))
    }
}
