//! The inventory Lambda functions: `inventory-reserve` (order.created), `inventory-release`
//! (order.cancelled, order.shipped, refund.requested), `inventory-products` and
//! `inventory-admin` (HTTP).

use crate::domain::{
    self, ReleaseAction, ReservationStatus, ReserveAction, RestockAction, ShipAction, StockFigure,
};
use crate::pg::{Movement, PgStock, StockChange};
use crate::stock_cache::RedisStockCache;
use async_trait::async_trait;
use shared::contracts::{Payload, RejectReason, StockRejected, StockReleased, StockReserved};
use shared::lambda::{HttpFunction, RmqFunction};
use shared::runner::{Applied, MessageHandler};
use shared::{Envelope, Function, HandleError};
use sqlx::PgConnection;
use std::collections::HashMap;
use std::sync::Arc;

pub const RESERVE: &str = "inventory-reserve";
pub const RELEASE: &str = "inventory-release";
pub const PRODUCTS: &str = "inventory-products";
pub const ADMIN: &str = "inventory-admin";

pub fn reserve(ctx: &shared::context::Context) -> Arc<dyn Function> {
    Arc::new(RmqFunction(ctx.batch_runner(Reserve {
        cache: RedisStockCache::from_context(ctx),
    })))
}

pub fn release(ctx: &shared::context::Context) -> Arc<dyn Function> {
    Arc::new(RmqFunction(ctx.batch_runner(Release {
        cache: RedisStockCache::from_context(ctx),
    })))
}

pub fn products(ctx: &shared::context::Context) -> Arc<dyn Function> {
    let api = Arc::new(crate::api::ProductsApi::new(
        ctx.pool.clone(),
        RedisStockCache::from_context(ctx),
    ));
    Arc::new(HttpFunction(move |req| {
        let api = api.clone();
        async move { api.handle(req).await }
    }))
}

/// `inventory-admin` (HTTP `/admin/products...`): the catalog back office.
pub fn admin(ctx: &shared::context::Context) -> Arc<dyn Function> {
    let api = Arc::new(crate::admin::AdminApi::new(ctx));
    Arc::new(HttpFunction(move |req| {
        let api = api.clone();
        async move { api.handle(req).await }
    }))
}

/// The newest figure of every product touched by the batch, written in one pipeline.
/// Current figures of the products an order's reservation touches: what a crash before
/// `after_commit` would have left unwritten in the cache.
async fn figures_of_order(
    pool: &sqlx::PgPool,
    env: &Envelope,
) -> Result<Vec<StockChange>, HandleError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT line.product_id FROM inventory.reservations r,
                jsonb_to_recordset(r.items) AS line(product_id text, quantity int)
         WHERE r.order_id = $1",
    )
    .bind(&env.correlation_id)
    .fetch_all(pool)
    .await?;
    Ok(PgStock::figures(pool, &ids)
        .await?
        .into_iter()
        .map(|(product_id, figure)| StockChange {
            product_id,
            figure,
            fell_to_low: None,
        })
        .collect())
}

async fn refresh_cache(cache: &RedisStockCache, effects: Vec<StockChange>) {
    let mut newest: HashMap<String, StockFigure> = HashMap::new();
    for change in effects {
        let entry = newest.entry(change.product_id).or_insert(change.figure);
        if change.figure.version > entry.version {
            *entry = change.figure;
        }
    }
    let figures: Vec<(String, StockFigure)> = newest.into_iter().collect();
    cache.refresh(&figures).await;
}

/// The events and cache effects of a change of stock, with a `stock.low` for each product
/// the change made fall to its threshold.
fn with_changes(
    mut events: Vec<Envelope>,
    changes: Vec<StockChange>,
    cause: Option<&Envelope>,
) -> Applied<StockChange> {
    for c in &changes {
        if let Some(threshold) = c.fell_to_low {
            events.push(crate::backoffice::stock_low(
                &c.product_id,
                c.figure.available,
                threshold,
                cause,
            ));
        }
    }
    Applied {
        events,
        effects: changes,
    }
}

/// Reserves an order's stock, all lines or none.
pub struct Reserve {
    pub cache: RedisStockCache,
}

#[async_trait]
impl MessageHandler for Reserve {
    type Effect = StockChange;

    fn name(&self) -> &'static str {
        RESERVE
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<StockChange>, HandleError> {
        let Payload::OrderCreated(order) = env.payload() else {
            return Err(HandleError::unexpected(env));
        };
        if order.order_id.trim().is_empty() {
            return Err(HandleError::permanent("order.created without an order_id"));
        }
        let lines = domain::reservation_lines(&order.items).map_err(HandleError::Permanent)?;
        let (status, _) = PgStock::lock_or_create(tx, &order.order_id).await?;
        let rejected = |reason: RejectReason, product_id: String| {
            let payload = Payload::StockRejected(StockRejected {
                order_id: order.order_id.clone(),
                reason: reason as i32,
                product_id,
            });
            Envelope::new(payload, Some(env))
        };
        match domain::on_order_created(status) {
            ReserveAction::Nothing => {
                tracing::info!(%status, "reservation already decided; nothing to do");
                Ok(Applied::nothing())
            }
            ReserveAction::RefuseCancelled => {
                tracing::info!("order was cancelled before its reservation; refused");
                Ok(Applied::events(vec![rejected(
                    RejectReason::OrderCancelled,
                    String::new(),
                )]))
            }
            ReserveAction::Reserve => match PgStock::take(tx, &order.order_id, &lines).await? {
                Ok(changes) => {
                    PgStock::set_reservation(
                        tx,
                        &order.order_id,
                        ReservationStatus::Reserved,
                        &lines,
                    )
                    .await?;
                    tracing::info!(lines = lines.len(), "stock reserved");
                    let payload = Payload::StockReserved(StockReserved {
                        order_id: order.order_id.clone(),
                        items: domain::to_order_lines(&lines),
                    });
                    Ok(with_changes(
                        vec![Envelope::new(payload, Some(env))],
                        changes,
                        Some(env),
                    ))
                }
                Err(shortage) => {
                    PgStock::set_reservation(tx, &order.order_id, ReservationStatus::Rejected, &[])
                        .await?;
                    tracing::info!(product_id = %shortage.product_id, reason = ?shortage.reason, "stock rejected");
                    Ok(Applied::events(vec![rejected(
                        shortage.reason,
                        shortage.product_id,
                    )]))
                }
            },
        }
    }

    /// A whole chunk in five statements: lock or create every reservation, lock the
    /// products they name, decide each order in arrival order against what is locked
    /// (`domain::allocate`, the same rule as the per-message path), then write the stock
    /// taken, the ledger rows and the reservations. A message that fails validation fails
    /// the chunk, which the runner then applies message by message (parking that one).
    fn applies_in_bulk(&self) -> bool {
        true
    }

    async fn apply_chunk(
        &self,
        tx: &mut PgConnection,
        events: &[&Envelope],
    ) -> Result<Applied<StockChange>, HandleError> {
        let mut orders = Vec::with_capacity(events.len());
        for env in events {
            let Payload::OrderCreated(order) = env.payload() else {
                return Err(HandleError::unexpected(env));
            };
            if order.order_id.trim().is_empty() {
                return Err(HandleError::permanent("order.created without an order_id"));
            }
            let lines = domain::reservation_lines(&order.items).map_err(HandleError::Permanent)?;
            orders.push((*env, order, lines));
        }
        let ids: Vec<&str> = orders.iter().map(|(_, o, _)| o.order_id.as_str()).collect();
        let mut status = PgStock::lock_or_create_many(tx, &ids).await?;
        let mut products: Vec<&str> = orders
            .iter()
            .filter(|(_, o, _)| status.get(&o.order_id) == Some(&ReservationStatus::Pending))
            .flat_map(|(_, _, lines)| lines.iter().map(|l| l.product_id.as_str()))
            .collect();
        products.sort_unstable();
        products.dedup();
        let mut stock = PgStock::lock_stock(tx, &products).await?;
        let mut decided = Vec::new();
        let mut events_out = Vec::with_capacity(orders.len());
        for (env, order, lines) in orders {
            let current = status.get(&order.order_id).copied().ok_or_else(|| {
                anyhow::anyhow!("reservation of {} was not locked", order.order_id)
            })?;
            let rejected = |reason: RejectReason, product_id: String| {
                let payload = Payload::StockRejected(StockRejected {
                    order_id: order.order_id.clone(),
                    reason: reason as i32,
                    product_id,
                });
                Envelope::new(payload, Some(env))
            };
            match domain::on_order_created(current) {
                ReserveAction::Nothing => {}
                ReserveAction::RefuseCancelled => {
                    events_out.push(rejected(RejectReason::OrderCancelled, String::new()))
                }
                ReserveAction::Reserve => match domain::allocate(&mut stock, &lines) {
                    domain::Allocation::Reserved => {
                        let payload = Payload::StockReserved(StockReserved {
                            order_id: order.order_id.clone(),
                            items: domain::to_order_lines(&lines),
                        });
                        events_out.push(Envelope::new(payload, Some(env)));
                        status.insert(order.order_id.clone(), ReservationStatus::Reserved);
                        decided.push((order.order_id.clone(), ReservationStatus::Reserved, lines));
                    }
                    domain::Allocation::Short { product_id, reason } => {
                        events_out.push(rejected(reason, product_id));
                        status.insert(order.order_id.clone(), ReservationStatus::Rejected);
                        decided.push((order.order_id.clone(), ReservationStatus::Rejected, vec![]));
                    }
                },
            }
        }
        let changes = PgStock::apply_reservations(tx, &decided).await?;
        tracing::info!(
            orders = events.len(),
            decided = decided.len(),
            "chunk of reservations applied"
        );
        // A product's units may come from several orders of the chunk: its alert is the
        // chunk's, caused by no single one of them.
        Ok(with_changes(events_out, changes, None))
    }

    async fn after_commit(&self, effects: Vec<StockChange>) {
        refresh_cache(&self.cache, effects).await;
    }

    async fn redelivered_effects(
        &self,
        pool: &sqlx::PgPool,
        env: &Envelope,
    ) -> Result<Vec<StockChange>, HandleError> {
        figures_of_order(pool, env).await
    }
}

/// The stock's moves after the order's decision, one order at a time (all on one queue, so
/// one order's cancel, shipment and refunds apply in order): a cancel gives the held units
/// back or leaves a tombstone; a shipment moves them to shipped; a refund with restock
/// puts units back on sale.
pub struct Release {
    pub cache: RedisStockCache,
}

#[async_trait]
impl MessageHandler for Release {
    type Effect = StockChange;

    fn name(&self) -> &'static str {
        RELEASE
    }

    fn schema(&self) -> &'static str {
        crate::SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        env: &Envelope,
    ) -> Result<Applied<StockChange>, HandleError> {
        match env.payload() {
            Payload::OrderCancelled(cancel) => give_back(tx, env, cancel).await,
            Payload::OrderShipped(shipped) => ship(tx, shipped).await,
            Payload::RefundRequested(refund) => restock(tx, refund).await,
            _ => Err(HandleError::unexpected(env)),
        }
    }

    async fn after_commit(&self, effects: Vec<StockChange>) {
        refresh_cache(&self.cache, effects).await;
    }

    async fn redelivered_effects(
        &self,
        pool: &sqlx::PgPool,
        env: &Envelope,
    ) -> Result<Vec<StockChange>, HandleError> {
        figures_of_order(pool, env).await
    }
}

/// `order.cancelled`: gives the order's held units back (a PENDING order's, or a CONFIRMED
/// one's the customer cancelled), or leaves a tombstone when nothing was reserved yet.
async fn give_back(
    tx: &mut PgConnection,
    env: &Envelope,
    cancel: &shared::contracts::OrderCancelled,
) -> Result<Applied<StockChange>, HandleError> {
    if cancel.order_id.trim().is_empty() {
        return Err(HandleError::permanent(
            "order.cancelled without an order_id",
        ));
    }
    let (status, items) = PgStock::lock_or_create(tx, &cancel.order_id).await?;
    match domain::on_order_cancelled(status) {
        ReleaseAction::Nothing => Ok(Applied::nothing()),
        ReleaseAction::Tombstone => {
            PgStock::set_reservation(tx, &cancel.order_id, ReservationStatus::Cancelled, &[])
                .await?;
            tracing::info!("cancel arrived before the reservation; tombstone left");
            Ok(Applied::nothing())
        }
        ReleaseAction::Release => {
            let changes = PgStock::give_back(tx, &cancel.order_id, &items).await?;
            PgStock::set_reservation(tx, &cancel.order_id, ReservationStatus::Released, &items)
                .await?;
            tracing::info!(lines = items.len(), "stock released");
            let payload = Payload::StockReleased(StockReleased {
                order_id: cancel.order_id.clone(),
                items: domain::to_order_lines(&items),
            });
            Ok(with_changes(
                vec![Envelope::new(payload, Some(env))],
                changes,
                Some(env),
            ))
        }
    }
}

/// `order.shipped`: the units the order holds become shipped (by the reservation's own
/// lines, which a refund may have reduced); a redelivery finds it shipped already.
async fn ship(
    tx: &mut PgConnection,
    shipped: &shared::contracts::OrderShipped,
) -> Result<Applied<StockChange>, HandleError> {
    if shipped.order_id.trim().is_empty() {
        return Err(HandleError::permanent("order.shipped without an order_id"));
    }
    let Some((status, items)) = PgStock::lock(tx, &shipped.order_id).await? else {
        tracing::warn!("order.shipped for an order with no reservation; nothing to move");
        return Ok(Applied::nothing());
    };
    match domain::on_order_shipped(status) {
        ShipAction::Nothing => {
            tracing::info!(%status, "nothing held to ship");
            Ok(Applied::nothing())
        }
        ShipAction::Ship => {
            PgStock::ship(tx, &shipped.order_id, &items).await?;
            PgStock::set_reservation(tx, &shipped.order_id, ReservationStatus::Shipped, &items)
                .await?;
            tracing::info!(lines = items.len(), "stock shipped");
            Ok(Applied::nothing())
        }
    }
}

/// `refund.requested` with restock: the refunded lines go back on sale once per refund id,
/// out of the order's holding when it has not shipped, else back from the customer; never
/// more than the order held or shipped (less what earlier refunds returned).
async fn restock(
    tx: &mut PgConnection,
    refund: &shared::contracts::RefundRequested,
) -> Result<Applied<StockChange>, HandleError> {
    if !refund.restock || refund.items.is_empty() {
        return Ok(Applied::nothing());
    }
    if refund.order_id.trim().is_empty() || refund.refund_id.trim().is_empty() {
        return Err(HandleError::permanent(
            "refund.requested without an order_id or refund_id",
        ));
    }
    let requested = domain::reservation_lines(&refund.items).map_err(HandleError::Permanent)?;
    let Some((status, items)) = PgStock::lock(tx, &refund.order_id).await? else {
        tracing::warn!("refund with restock for an order with no reservation; nothing to restock");
        return Ok(Applied::nothing());
    };
    let (kind, room) = match domain::on_refund_restock(status) {
        RestockAction::Nothing => {
            tracing::info!(%status, "nothing held or shipped to restock");
            return Ok(Applied::nothing());
        }
        RestockAction::FromHolding => (
            Movement::RefundRelease,
            items
                .iter()
                .map(|l| (l.product_id.clone(), l.quantity))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
        RestockAction::Return => {
            let returned = PgStock::returned(tx, &refund.order_id).await?;
            let room = items
                .iter()
                .map(|l| {
                    let back = returned.get(&l.product_id).copied().unwrap_or(0);
                    (l.product_id.clone(), l.quantity - back)
                })
                .collect();
            (Movement::Return, room)
        }
    };
    let lines = domain::restock_lines(&requested, &room);
    if !PgStock::claim_refund(tx, &refund.refund_id, &refund.order_id, &lines).await? {
        tracing::info!(refund_id = %refund.refund_id, "refund already restocked");
        return Ok(Applied::nothing());
    }
    let changes = PgStock::restock(tx, &refund.order_id, kind, &lines).await?;
    if kind == Movement::RefundRelease {
        let held = domain::lines_less(&items, &lines);
        PgStock::set_reservation(tx, &refund.order_id, ReservationStatus::Reserved, &held).await?;
    }
    tracing::info!(refund_id = %refund.refund_id, kind = kind.as_str(), lines = lines.len(), "refund restocked");
    Ok(with_changes(vec![], changes, None))
}

/// `inventory-relay` (schedule): re-sends outbox rows a crash or a broker outage left behind.
pub fn relay(ctx: &shared::context::Context) -> Arc<dyn Function> {
    shared::lambda::outbox_relay(ctx, crate::SCHEMA)
}
