//! `PgStock`: the `inventory.products` and `inventory.reservations` tables.
//!
//! Each order's reservation row is locked (created as `pending` first if absent) so every
//! event about one order applies serially. Stock is only ever taken by a conditional
//! `UPDATE ... WHERE available >= $q`: that, not any read before it, is what keeps the last
//! unit from being sold twice.

use crate::domain::{Line, ReservationStatus, StockFigure};
use shared::contracts::RejectReason;
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use std::collections::{BTreeMap, HashMap};

/// A product's new stock figure after a committed change (for the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    pub product_id: String,
    pub figure: StockFigure,
    /// The product's low stock threshold, when this change made `available` fall to it
    /// (`crate::product::fell_to_low`): the handler then publishes `stock.low`.
    pub fell_to_low: Option<i64>,
}

impl StockChange {
    fn new(product_id: String, version: i64, available: i32) -> Self {
        StockChange {
            product_id,
            figure: StockFigure {
                version,
                available: i64::from(available),
            },
            fell_to_low: None,
        }
    }

    /// A change that took `taken` units from the product, alerting if it fell to `threshold`.
    fn taken(product_id: String, version: i64, available: i32, taken: i32, threshold: i32) -> Self {
        let after = i64::from(available);
        let threshold = i64::from(threshold);
        let fell = crate::product::fell_to_low(after + i64::from(taken), after, threshold);
        StockChange {
            fell_to_low: fell.then_some(threshold),
            ..Self::new(product_id, version, available)
        }
    }
}

/// Why a reservation could not take all its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub product_id: String,
    pub reason: RejectReason,
}

/// Why stock moved, as `inventory.stock_movements.kind` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    Restock,
    Reserve,
    Release,
    /// An order's held units left with a carrier (`available` unchanged).
    Ship,
    /// A refund put shipped units back on sale.
    Return,
    /// A refund put units an order still held back on sale.
    RefundRelease,
}

impl Movement {
    pub fn as_str(self) -> &'static str {
        match self {
            Movement::Restock => "restock",
            Movement::Reserve => "reserve",
            Movement::Release => "release",
            Movement::Ship => "ship",
            Movement::Return => "return",
            Movement::RefundRelease => "refund_release",
        }
    }
}

pub struct PgStock;

impl PgStock {
    /// Inserts a `pending` reservation if absent, then locks it until the transaction ends.
    pub async fn lock_or_create(
        conn: &mut PgConnection,
        order_id: &str,
    ) -> anyhow::Result<(ReservationStatus, Vec<Line>)> {
        // One round trip: the no-op update on conflict locks the existing row (as FOR UPDATE
        // would) and returns it; a new row comes back as `pending`.
        let (status, Json(items)): (String, Json<Vec<Line>>) = sqlx::query_as(
            "INSERT INTO inventory.reservations (order_id, status) VALUES ($1, 'pending')
             ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id
             RETURNING status, items",
        )
        .bind(order_id)
        .fetch_one(&mut *conn)
        .await?;
        let status = ReservationStatus::parse(&status).ok_or_else(|| {
            anyhow::anyhow!("reservation of order {order_id} has an unknown status {status:?}")
        })?;
        Ok((status, items))
    }

    pub async fn set_reservation(
        conn: &mut PgConnection,
        order_id: &str,
        status: ReservationStatus,
        items: &[Line],
    ) -> sqlx::Result<()> {
        sqlx::query("UPDATE inventory.reservations SET status = $2, items = $3, updated_at = now() WHERE order_id = $1")
            .bind(order_id)
            .bind(status.as_str())
            .bind(Json(items))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Takes every line or none: the updates run inside a savepoint that is rolled back at
    /// the first line that cannot be served. `lines` must be sorted by product id.
    pub async fn take(
        conn: &mut PgConnection,
        order_id: &str,
        lines: &[Line],
    ) -> sqlx::Result<Result<Vec<StockChange>, Shortage>> {
        sqlx::query("SAVEPOINT reserve").execute(&mut *conn).await?;
        let mut changes = Vec::with_capacity(lines.len());
        for line in lines {
            let row: Option<(i32, i64, i32)> = sqlx::query_as(
                "UPDATE inventory.products
                 SET available = available - $2, reserved = reserved + $2,
                     version = version + 1, updated_at = now()
                 WHERE product_id = $1 AND available >= $2
                 RETURNING available, version, low_stock_threshold",
            )
            .bind(&line.product_id)
            .bind(line.quantity)
            .fetch_optional(&mut *conn)
            .await?;
            match row {
                Some((available, version, threshold)) => changes.push(StockChange::taken(
                    line.product_id.clone(),
                    version,
                    available,
                    line.quantity,
                    threshold,
                )),
                None => {
                    sqlx::query("ROLLBACK TO SAVEPOINT reserve")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("RELEASE SAVEPOINT reserve")
                        .execute(&mut *conn)
                        .await?;
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM inventory.products WHERE product_id = $1)",
                    )
                    .bind(&line.product_id)
                    .fetch_one(&mut *conn)
                    .await?;
                    let reason = if exists {
                        RejectReason::OutOfStock
                    } else {
                        RejectReason::UnknownProduct
                    };
                    return Ok(Err(Shortage {
                        product_id: line.product_id.clone(),
                        reason,
                    }));
                }
            }
        }
        sqlx::query("RELEASE SAVEPOINT reserve")
            .execute(&mut *conn)
            .await?;
        Self::record_movements(conn, order_id, Movement::Reserve, lines).await?;
        Ok(Ok(changes))
    }

    /// Writes the ledger rows of an order's reservation or release (one statement), in the
    /// transaction that changed the stock: see `inventory.stock_movements`.
    async fn record_movements(
        conn: &mut PgConnection,
        order_id: &str,
        kind: Movement,
        lines: &[Line],
    ) -> sqlx::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        // `delta` is what `available` gained; a shipment moves no available units, it
        // records how many left in `quantity`.
        let (sign, shipped) = match kind {
            Movement::Reserve => (-1, 0),
            Movement::Ship => (0, 1),
            Movement::Release | Movement::Restock | Movement::Return | Movement::RefundRelease => {
                (1, 0)
            }
        };
        let products: Vec<&str> = lines.iter().map(|l| l.product_id.as_str()).collect();
        let deltas: Vec<i32> = lines.iter().map(|l| sign * l.quantity).collect();
        let quantities: Vec<i32> = lines.iter().map(|l| shipped * l.quantity).collect();
        sqlx::query(
            "INSERT INTO inventory.stock_movements (product_id, kind, order_id, delta, quantity)
             SELECT p, $3, $4, d, q FROM UNNEST($1::text[], $2::int[], $5::int[]) AS m(p, d, q)",
        )
        .bind(products)
        .bind(deltas)
        .bind(kind.as_str())
        .bind(order_id)
        .bind(quantities)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Gives reserved quantities back. `lines` are sorted by product id (as stored).
    pub async fn give_back(
        conn: &mut PgConnection,
        order_id: &str,
        lines: &[Line],
    ) -> sqlx::Result<Vec<StockChange>> {
        let mut changes = Vec::with_capacity(lines.len());
        let mut returned = Vec::with_capacity(lines.len());
        for line in lines {
            let row: Option<(i32, i64)> = sqlx::query_as(
                "UPDATE inventory.products
                 SET available = available + $2, reserved = reserved - $2,
                     version = version + 1, updated_at = now()
                 WHERE product_id = $1
                 RETURNING available, version",
            )
            .bind(&line.product_id)
            .bind(line.quantity)
            .fetch_optional(&mut *conn)
            .await?;
            match row {
                Some((available, version)) => changes.push(StockChange::new(
                    line.product_id.clone(),
                    version,
                    available,
                )),
                None => {
                    tracing::warn!(product_id = %line.product_id, "released a line of a product that no longer exists")
                }
            }
            if changes
                .last()
                .is_some_and(|c| c.product_id == line.product_id)
            {
                returned.push(line.clone());
            }
        }
        Self::record_movements(conn, order_id, Movement::Release, &returned).await?;
        Ok(changes)
    }

    /// Locks an existing reservation (a refund or shipment of an order this service never
    /// saw creates nothing).
    pub async fn lock(
        conn: &mut PgConnection,
        order_id: &str,
    ) -> anyhow::Result<Option<(ReservationStatus, Vec<Line>)>> {
        let row: Option<(String, Json<Vec<Line>>)> = sqlx::query_as(
            "SELECT status, items FROM inventory.reservations WHERE order_id = $1 FOR UPDATE",
        )
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|(status, Json(items))| {
            let parsed = ReservationStatus::parse(&status).ok_or_else(|| {
                anyhow::anyhow!("reservation of order {order_id} has an unknown status {status:?}")
            })?;
            Ok((parsed, items))
        })
        .transpose()
    }

    /// The order's held units leave: `reserved` goes down, `available` does not move, and
    /// the ledger records what shipped. Products are updated in the lines' (id) order.
    pub async fn ship(conn: &mut PgConnection, order_id: &str, lines: &[Line]) -> sqlx::Result<()> {
        for line in lines {
            sqlx::query(
                "UPDATE inventory.products SET reserved = reserved - $2, updated_at = now()
                 WHERE product_id = $1",
            )
            .bind(&line.product_id)
            .bind(line.quantity)
            .execute(&mut *conn)
            .await?;
        }
        Self::record_movements(conn, order_id, Movement::Ship, lines).await
    }

    /// A refund's restock: the lines go back on sale, out of the order's holding
    /// (`RefundRelease`, not shipped yet) or back from the customer (`Return`).
    pub async fn restock(
        conn: &mut PgConnection,
        order_id: &str,
        kind: Movement,
        lines: &[Line],
    ) -> sqlx::Result<Vec<StockChange>> {
        // Out of holding: reserved goes down. Back from the customer: what came in counts
        // with the stock received (`initial`), as shipped units had left it.
        let (from_reserved, received) = match kind {
            Movement::RefundRelease => (1, 0),
            _ => (0, 1),
        };
        let mut changes = Vec::with_capacity(lines.len());
        for line in lines {
            let row: Option<(i32, i64)> = sqlx::query_as(
                "UPDATE inventory.products
                 SET available = available + $2, reserved = reserved - $2 * $3,
                     initial = initial + $2 * $4, version = version + 1, updated_at = now()
                 WHERE product_id = $1
                 RETURNING available, version",
            )
            .bind(&line.product_id)
            .bind(line.quantity)
            .bind(from_reserved)
            .bind(received)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((available, version)) = row {
                changes.push(StockChange::new(
                    line.product_id.clone(),
                    version,
                    available,
                ));
            }
        }
        Self::record_movements(conn, order_id, kind, lines).await?;
        Ok(changes)
    }

    /// Units of each product already returned for the order by earlier refunds.
    pub async fn returned(
        conn: &mut PgConnection,
        order_id: &str,
    ) -> sqlx::Result<BTreeMap<String, i32>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT product_id, sum(delta)::bigint FROM inventory.stock_movements
             WHERE order_id = $1 AND kind = 'return' GROUP BY product_id",
        )
        .bind(order_id)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(p, n)| (p, i32::try_from(n).unwrap_or(i32::MAX)))
            .collect())
    }

    /// Claims the refund's restock: false when this refund id restocked before (under
    /// any event id), and then nothing is done again.
    pub async fn claim_refund(
        conn: &mut PgConnection,
        refund_id: &str,
        order_id: &str,
        lines: &[Line],
    ) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO inventory.refund_restocks (refund_id, order_id, items) VALUES ($1, $2, $3)
             ON CONFLICT (refund_id) DO NOTHING",
        )
        .bind(refund_id)
        .bind(order_id)
        .bind(Json(lines))
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `lock_or_create` for a whole chunk in one statement; rows are locked in order-id
    /// order so concurrent chunks cannot deadlock on each other.
    pub async fn lock_or_create_many(
        conn: &mut PgConnection,
        order_ids: &[&str],
    ) -> anyhow::Result<HashMap<String, ReservationStatus>> {
        let rows =
            shared::db::lock_or_create_statuses(conn, "inventory.reservations", order_ids).await?;
        rows.into_iter()
            .map(|(id, status)| {
                let parsed = ReservationStatus::parse(&status).ok_or_else(|| {
                    anyhow::anyhow!("reservation of order {id} has an unknown status {status:?}")
                })?;
                Ok((id, parsed))
            })
            .collect()
    }

    /// Locks the products (in id order, as every path does) and returns what is available.
    /// Unknown ids are absent.
    pub async fn lock_stock(
        conn: &mut PgConnection,
        ids: &[&str],
    ) -> sqlx::Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i32)> = sqlx::query_as(
            "SELECT product_id, available FROM inventory.products
             WHERE product_id = ANY($1) ORDER BY product_id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, available)| (id, i64::from(available)))
            .collect())
    }

    /// Writes a chunk's decisions: stock taken per product (one update), the ledger rows of
    /// every reservation (one insert) and every reservation's new status and lines (one
    /// update). The products must be locked (`lock_stock`) and `taken` must fit in what they
    /// hold; the `available >= 0` check would refuse it otherwise.
    pub async fn apply_reservations(
        conn: &mut PgConnection,
        decided: &[(String, ReservationStatus, Vec<Line>)],
    ) -> sqlx::Result<Vec<StockChange>> {
        let mut taken: BTreeMap<&str, i32> = BTreeMap::new();
        let (mut mv_orders, mut mv_products, mut mv_deltas) = (vec![], vec![], vec![]);
        for (order_id, status, lines) in decided {
            if *status != ReservationStatus::Reserved {
                continue;
            }
            for l in lines {
                *taken.entry(l.product_id.as_str()).or_default() += l.quantity;
                mv_orders.push(order_id.as_str());
                mv_products.push(l.product_id.as_str());
                mv_deltas.push(-l.quantity);
            }
        }
        let mut changes = Vec::with_capacity(taken.len());
        if !taken.is_empty() {
            let (ids, qty): (Vec<&str>, Vec<i32>) = taken.into_iter().unzip();
            let rows: Vec<(String, i32, i64, i32, i32)> = sqlx::query_as(
                "UPDATE inventory.products AS p
                 SET available = p.available - t.qty, reserved = p.reserved + t.qty,
                     version = p.version + 1, updated_at = now()
                 FROM UNNEST($1::text[], $2::int[]) AS t(id, qty)
                 WHERE p.product_id = t.id
                 RETURNING p.product_id, p.available, p.version, t.qty, p.low_stock_threshold",
            )
            .bind(&ids)
            .bind(&qty)
            .fetch_all(&mut *conn)
            .await?;
            changes.extend(rows.into_iter().map(
                |(product_id, available, version, taken, threshold)| {
                    StockChange::taken(product_id, version, available, taken, threshold)
                },
            ));
            sqlx::query(
                "INSERT INTO inventory.stock_movements (product_id, kind, order_id, delta)
                 SELECT p, 'reserve', o, d FROM UNNEST($1::text[], $2::text[], $3::int[]) AS m(o, p, d)",
            )
            .bind(&mv_orders)
            .bind(&mv_products)
            .bind(&mv_deltas)
            .execute(&mut *conn)
            .await?;
        }
        if !decided.is_empty() {
            let ids: Vec<&str> = decided.iter().map(|d| d.0.as_str()).collect();
            let statuses: Vec<&str> = decided.iter().map(|d| d.1.as_str()).collect();
            let items: Vec<Json<&Vec<Line>>> = decided.iter().map(|d| Json(&d.2)).collect();
            sqlx::query(
                "UPDATE inventory.reservations AS r
                 SET status = u.status, items = u.items, updated_at = now()
                 FROM UNNEST($1::text[], $2::text[], $3::jsonb[]) AS u(id, status, items)
                 WHERE r.order_id = u.id",
            )
            .bind(&ids)
            .bind(&statuses)
            .bind(&items)
            .execute(&mut *conn)
            .await?;
        }
        Ok(changes)
    }

    /// Current figures of the given products (unknown ids are absent).
    pub async fn figures<'e>(
        db: impl PgExecutor<'e>,
        ids: &[String],
    ) -> sqlx::Result<Vec<(String, StockFigure)>> {
        let rows: Vec<(String, i64, i32)> =
            sqlx::query_as("SELECT product_id, version, available FROM inventory.products WHERE product_id = ANY($1)")
                .bind(ids)
                .fetch_all(db)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, version, available)| {
                (
                    id,
                    StockFigure {
                        version,
                        available: i64::from(available),
                    },
                )
            })
            .collect())
    }
}
