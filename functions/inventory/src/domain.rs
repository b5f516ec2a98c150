//! Pure inventory decisions and value checks: what an event does given the reservation's
//! status, how order lines become reservation lines, what a valid seed or id list is, and
//! the stock cache's value format. No I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The status column of `inventory.reservations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    /// Row created by the first event to arrive; nothing decided yet.
    Pending,
    Reserved,
    Rejected,
    Released,
    /// Tombstone: the order was cancelled before its reservation was attempted.
    Cancelled,
    /// The order's units left with a carrier; `items` are what was shipped.
    Shipped,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Pending => "pending",
            ReservationStatus::Reserved => "reserved",
            ReservationStatus::Rejected => "rejected",
            ReservationStatus::Released => "released",
            ReservationStatus::Cancelled => "cancelled",
            ReservationStatus::Shipped => "shipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ReservationStatus::Pending,
            "reserved" => ReservationStatus::Reserved,
            "rejected" => ReservationStatus::Rejected,
            "released" => ReservationStatus::Released,
            "cancelled" => ReservationStatus::Cancelled,
            "shipped" => ReservationStatus::Shipped,
            _ => return None,
        })
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `order.created` does to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveAction {
    /// Take the stock (all lines or none).
    Reserve,
    /// A cancel got here first: reject with ORDER_CANCELLED, change nothing.
    RefuseCancelled,
    /// Already decided (a redelivery under another event id): publish nothing.
    Nothing,
}

pub fn on_order_created(status: ReservationStatus) -> ReserveAction {
    match status {
        ReservationStatus::Pending => ReserveAction::Reserve,
        ReservationStatus::Cancelled => ReserveAction::RefuseCancelled,
        ReservationStatus::Reserved
        | ReservationStatus::Rejected
        | ReservationStatus::Released
        | ReservationStatus::Shipped => ReserveAction::Nothing,
    }
}

/// What `order.cancelled` does to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseAction {
    /// Give the reserved quantities back.
    Release,
    /// Nothing reserved yet: leave a tombstone so the late `order.created` is refused.
    Tombstone,
    Nothing,
}

pub fn on_order_cancelled(status: ReservationStatus) -> ReleaseAction {
    match status {
        ReservationStatus::Reserved => ReleaseAction::Release,
        ReservationStatus::Pending => ReleaseAction::Tombstone,
        // A shipped order is not cancellable (the order service answers 409): its units
        // come back only through a refund with restock.
        ReservationStatus::Rejected
        | ReservationStatus::Released
        | ReservationStatus::Cancelled
        | ReservationStatus::Shipped => ReleaseAction::Nothing,
    }
}

/// What `order.shipped` does to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipAction {
    /// The held units leave: reserved becomes shipped, `available` does not move.
    Ship,
    /// Already shipped (a redelivery), or nothing held to ship.
    Nothing,
}

pub fn on_order_shipped(status: ReservationStatus) -> ShipAction {
    match status {
        ReservationStatus::Reserved => ShipAction::Ship,
        ReservationStatus::Pending
        | ReservationStatus::Rejected
        | ReservationStatus::Released
        | ReservationStatus::Cancelled
        | ReservationStatus::Shipped => ShipAction::Nothing,
    }
}

/// What `refund.requested` with `restock` does to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestockAction {
    /// Not shipped yet: the units come out of the order's holding, back on sale.
    FromHolding,
    /// Shipped: the units come back from the customer, back on sale.
    Return,
    /// Nothing is held or shipped (never reserved, rejected, released): nothing to restock.
    Nothing,
}

pub fn on_refund_restock(status: ReservationStatus) -> RestockAction {
    match status {
        ReservationStatus::Reserved => RestockAction::FromHolding,
        ReservationStatus::Shipped => RestockAction::Return,
        ReservationStatus::Pending
        | ReservationStatus::Rejected
        | ReservationStatus::Released
        | ReservationStatus::Cancelled => RestockAction::Nothing,
    }
}

/// The refunded lines that can go back on sale: each capped at what `room` says the order
/// can give back of that product (held units, or shipped units not returned yet), so a
/// refund asking for more never creates stock. Lines with nothing left are dropped.
pub fn restock_lines(requested: &[Line], room: &BTreeMap<String, i32>) -> Vec<Line> {
    requested
        .iter()
        .filter_map(|l| {
            let quantity = l
                .quantity
                .min(room.get(&l.product_id).copied().unwrap_or(0));
            (quantity > 0).then(|| Line {
                quantity,
                ..l.clone()
            })
        })
        .collect()
}

/// `held` less `taken`, per product, without the lines that reach zero.
pub fn lines_less(held: &[Line], taken: &[Line]) -> Vec<Line> {
    held.iter()
        .filter_map(|l| {
            let gone: i32 = taken
                .iter()
                .filter(|t| t.product_id == l.product_id)
                .map(|t| t.quantity)
                .sum();
            let quantity = l.quantity - gone;
            (quantity > 0).then(|| Line {
                quantity,
                ..l.clone()
            })
        })
        .collect()
}

/// One product's quantity in a reservation (stored in `reservations.items`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: String,
    pub quantity: i32,
    #[serde(default)]
    pub unit_price_cents: i64,
}

/// The lines to reserve: duplicates merged, sorted by product id (every reservation locks
/// product rows in the same order, so concurrent ones cannot deadlock). The error is the
/// reason the message gets parked.
pub fn reservation_lines(items: &[shared::contracts::OrderLine]) -> Result<Vec<Line>, String> {
    if items.is_empty() {
        return Err("order has no items".into());
    }
    let mut merged: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    for item in items {
        if item.product_id.trim().is_empty() {
            return Err("order line without a product_id".into());
        }
        if item.quantity < 1 {
            return Err(format!(
                "quantity of {} must be at least 1",
                item.product_id
            ));
        }
        let entry = merged
            .entry(item.product_id.as_str())
            .or_insert((0, item.unit_price_cents));
        entry.0 += u64::from(item.quantity);
    }
    merged
        .into_iter()
        .map(|(product_id, (quantity, unit_price_cents))| {
            let quantity = i32::try_from(quantity)
                .map_err(|_| format!("quantity of {product_id} is too large"))?;
            Ok(Line {
                product_id: product_id.to_string(),
                quantity,
                unit_price_cents,
            })
        })
        .collect()
}

/// How one order of a chunk fares against the stock locked for the chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// Every line taken from `stock`.
    Reserved,
    /// The first line (in product order) that could not be served, and why.
    Short {
        product_id: String,
        reason: shared::contracts::RejectReason,
    },
}

/// Takes an order's lines from `stock` (product -> available), all of them or none, the way
/// the conditional update of the message-by-message path does: lines in product order, the
/// first one that cannot be served decides. Orders of a chunk are allocated in arrival order
/// against the same map, so the chunk decides exactly as its messages would one by one.
pub fn allocate(stock: &mut BTreeMap<String, i64>, lines: &[Line]) -> Allocation {
    use shared::contracts::RejectReason;
    for line in lines {
        match stock.get(&line.product_id) {
            None => {
                return Allocation::Short {
                    product_id: line.product_id.clone(),
                    reason: RejectReason::UnknownProduct,
                };
            }
            Some(available) if *available < i64::from(line.quantity) => {
                return Allocation::Short {
                    product_id: line.product_id.clone(),
                    reason: RejectReason::OutOfStock,
                };
            }
            Some(_) => {}
        }
    }
    for line in lines {
        if let Some(available) = stock.get_mut(&line.product_id) {
            *available -= i64::from(line.quantity);
        }
    }
    Allocation::Reserved
}

pub fn to_order_lines(lines: &[Line]) -> Vec<shared::contracts::OrderLine> {
    lines
        .iter()
        .map(|l| shared::contracts::OrderLine {
            product_id: l.product_id.clone(),
            quantity: u32::try_from(l.quantity).unwrap_or(0),
            unit_price_cents: l.unit_price_cents,
        })
        .collect()
}

/// A product as the seed file (and the local runner's `seed`) describes it.
#[derive(Deserialize, Serialize, Clone, Debug)]
pub struct ProductSeed {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i32,
}

pub use shared::product::valid_product_id;

impl ProductSeed {
    pub fn validate(&self) -> Result<(), String> {
        if !valid_product_id(&self.product_id) {
            return Err(format!(
                "invalid product_id {:?}: {}",
                self.product_id,
                shared::product::PRODUCT_ID_RULE
            ));
        }
        if self.price_cents < 0 {
            return Err(format!(
                "{}: price_cents must not be negative",
                self.product_id
            ));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "{}: currency {:?} must be 3 uppercase letters",
                self.product_id, self.currency
            ));
        }
        if self.stock < 0 {
            return Err(format!("{}: stock must not be negative", self.product_id));
        }
        Ok(())
    }
}

/// The most ids `GET /stock?ids=` accepts.
pub const MAX_STOCK_IDS: usize = 100;

/// `a,b,c` to distinct ids in order; the error is the 400 message.
pub fn parse_ids(raw: Option<&str>) -> Result<Vec<String>, String> {
    let mut ids: Vec<String> = Vec::new();
    for id in raw
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !valid_product_id(id) {
            return Err(format!(
                "invalid product id {id:?}: {}",
                shared::product::PRODUCT_ID_RULE
            ));
        }
        if !ids.iter().any(|seen| seen == id) {
            ids.push(id.to_string());
        }
    }
    if ids.is_empty() {
        return Err("query parameter ids is required: ?ids=a,b".into());
    }
    if ids.len() > MAX_STOCK_IDS {
        return Err(format!(
            "at most {MAX_STOCK_IDS} ids per request, got {}",
            ids.len()
        ));
    }
    Ok(ids)
}

/// A product's stock figure at a version, as the cache stores it (`"version:available"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockFigure {
    pub version: i64,
    pub available: i64,
}

impl StockFigure {
    pub fn encode(self) -> String {
        format!("{}:{}", self.version, self.available)
    }

    pub fn decode(value: &str) -> Option<Self> {
        let (version, available) = value.split_once(':')?;
        Some(StockFigure {
            version: version.parse().ok()?,
            available: available.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReservationStatus::*;
    use shared::contracts::OrderLine;

    const ALL: [ReservationStatus; 6] = [Pending, Reserved, Rejected, Released, Cancelled, Shipped];

    fn line(p: &str, q: u32) -> OrderLine {
        OrderLine {
            product_id: p.into(),
            quantity: q,
            unit_price_cents: 100,
        }
    }

    #[test]
    fn statuses_round_trip_through_their_column_names() {
        for s in ALL {
            assert_eq!(ReservationStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ReservationStatus::parse("held"), None);
    }

    #[test]
    fn order_created_reserves_only_pending_refuses_tombstones_and_ignores_the_rest() {
        assert_eq!(on_order_created(Pending), ReserveAction::Reserve);
        assert_eq!(on_order_created(Cancelled), ReserveAction::RefuseCancelled);
        for s in [Reserved, Rejected, Released, Shipped] {
            assert_eq!(on_order_created(s), ReserveAction::Nothing, "{s}");
        }
    }

    #[test]
    fn order_cancelled_releases_reserved_tombstones_pending_and_ignores_the_rest() {
        assert_eq!(on_order_cancelled(Reserved), ReleaseAction::Release);
        assert_eq!(on_order_cancelled(Pending), ReleaseAction::Tombstone);
        for s in [Rejected, Released, Cancelled, Shipped] {
            assert_eq!(on_order_cancelled(s), ReleaseAction::Nothing, "{s}");
        }
    }

    #[test]
    fn only_a_reserved_order_ships_and_a_restock_depends_on_whether_it_shipped() {
        assert_eq!(on_order_shipped(Reserved), ShipAction::Ship);
        for s in [Pending, Rejected, Released, Cancelled, Shipped] {
            assert_eq!(on_order_shipped(s), ShipAction::Nothing, "{s}");
        }
        assert_eq!(on_refund_restock(Reserved), RestockAction::FromHolding);
        assert_eq!(on_refund_restock(Shipped), RestockAction::Return);
        for s in [Pending, Rejected, Released, Cancelled] {
            assert_eq!(on_refund_restock(s), RestockAction::Nothing, "{s}");
        }
    }

    #[test]
    fn a_restock_never_gives_back_more_than_the_order_can() {
        let room: BTreeMap<String, i32> = [("a".to_string(), 2), ("b".to_string(), 0)].into();
        let got = restock_lines(&lines(&[("a", 5), ("b", 1), ("c", 1)]), &room);
        assert_eq!(got, lines(&[("a", 2)]));
        assert_eq!(
            lines_less(&lines(&[("a", 3), ("b", 1)]), &lines(&[("a", 2), ("b", 1)])),
            lines(&[("a", 1)])
        );
    }

    #[test]
    fn duplicate_lines_are_merged_and_sorted_by_product() {
        let lines = reservation_lines(&[line("b", 2), line("a", 1), line("b", 3)]).expect("valid");
        let got: Vec<(&str, i32)> = lines
            .iter()
            .map(|l| (l.product_id.as_str(), l.quantity))
            .collect();
        assert_eq!(got, vec![("a", 1), ("b", 5)]);
    }

    #[test]
    fn empty_orders_zero_quantities_and_blank_products_are_refused() {
        assert!(reservation_lines(&[]).unwrap_err().contains("no items"));
        assert!(
            reservation_lines(&[line("a", 0)])
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(reservation_lines(&[line(" ", 1)]).is_err());
        assert!(
            reservation_lines(&[line("a", u32::MAX), line("a", u32::MAX)])
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn order_lines_round_trip_through_reservation_lines() {
        let lines = reservation_lines(&[line("a", 2)]).expect("valid");
        assert_eq!(to_order_lines(&lines), vec![line("a", 2)]);
    }

    fn seed() -> ProductSeed {
        ProductSeed {
            product_id: "sku-1".into(),
            name: "Mug".into(),
            price_cents: 1299,
            currency: "EUR".into(),
            stock: 5,
        }
    }

    #[test]
    fn seeds_need_a_sane_id_price_currency_and_stock() {
        assert!(seed().validate().is_ok());
        for bad in [
            ProductSeed {
                product_id: String::new(),
                ..seed()
            },
            ProductSeed {
                product_id: "a b".into(),
                ..seed()
            },
            ProductSeed {
                product_id: "x".repeat(65),
                ..seed()
            },
            ProductSeed {
                price_cents: -1,
                ..seed()
            },
            ProductSeed {
                currency: "eur".into(),
                ..seed()
            },
            ProductSeed {
                currency: "EURO".into(),
                ..seed()
            },
            ProductSeed {
                stock: -1,
                ..seed()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(
            ProductSeed {
                product_id: "A_z-9".repeat(12),
                ..seed()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn id_lists_are_split_trimmed_deduplicated_and_bounded() {
        assert_eq!(
            parse_ids(Some("a, b,,a")),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        assert!(parse_ids(None).is_err());
        for bad in ["a,b\0", "sku x", "x".repeat(65).as_str(), "a,b/c"] {
            assert!(
                parse_ids(Some(bad))
                    .unwrap_err()
                    .contains("invalid product id"),
                "{bad:?}"
            );
        }
        assert!(parse_ids(Some(" , ")).is_err());
        let many: Vec<String> = (0..=MAX_STOCK_IDS).map(|i| format!("p{i}")).collect();
        assert!(
            parse_ids(Some(&many.join(",")))
                .unwrap_err()
                .contains("at most")
        );
        assert_eq!(
            parse_ids(Some(&many[..MAX_STOCK_IDS].join(","))).map(|v| v.len()),
            Ok(MAX_STOCK_IDS)
        );
    }

    #[test]
    fn cache_values_carry_version_and_available() {
        let f = StockFigure {
            version: 7,
            available: 3,
        };
        assert_eq!(f.encode(), "7:3");
        assert_eq!(StockFigure::decode("7:3"), Some(f));
        assert_eq!(StockFigure::decode("7"), None);
        assert_eq!(StockFigure::decode("x:3"), None);
    }

    fn stock(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(p, n)| (p.to_string(), *n)).collect()
    }

    fn lines(pairs: &[(&str, i32)]) -> Vec<Line> {
        pairs
            .iter()
            .map(|(p, q)| Line {
                product_id: p.to_string(),
                quantity: *q,
                unit_price_cents: 0,
            })
            .collect()
    }

    #[test]
    fn a_chunk_allocates_in_arrival_order_and_the_last_unit_goes_once() {
        let mut s = stock(&[("a", 1), ("b", 5)]);
        assert_eq!(
            allocate(&mut s, &lines(&[("a", 1), ("b", 2)])),
            Allocation::Reserved
        );
        assert_eq!(
            allocate(&mut s, &lines(&[("a", 1)])),
            Allocation::Short {
                product_id: "a".into(),
                reason: shared::contracts::RejectReason::OutOfStock
            }
        );
        assert_eq!(s, stock(&[("a", 0), ("b", 3)]));
    }

    #[test]
    fn a_short_line_takes_nothing_from_the_other_lines() {
        let mut s = stock(&[("a", 5), ("b", 1)]);
        let got = allocate(&mut s, &lines(&[("a", 2), ("b", 2)]));
        assert!(matches!(got, Allocation::Short { ref product_id, .. } if product_id == "b"));
        assert_eq!(s, stock(&[("a", 5), ("b", 1)]));
    }

    #[test]
    fn an_unknown_product_is_rejected_as_such() {
        let mut s = stock(&[("a", 5)]);
        assert_eq!(
            allocate(&mut s, &lines(&[("a", 1), ("zz", 1)])),
            Allocation::Short {
                product_id: "zz".into(),
                reason: shared::contracts::RejectReason::UnknownProduct
            }
        );
    }
}
