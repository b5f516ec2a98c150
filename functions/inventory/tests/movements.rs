//! `inventory-release` after the decision: a shipment moves an order's units from reserved
//! to shipped, a refund with restock puts units back on sale once per refund id, and a
//! customer's cancel of a CONFIRMED order gives its units back; each idempotent under
//! redelivery.

mod common;

use common::{Harness, created, customer_cancelled, refund, shipped};

async fn movements(h: &Harness, order_id: &str) -> Vec<(String, String, i32, i32)> {
    sqlx::query_as(
        "SELECT kind, product_id, delta, quantity FROM inventory.stock_movements
         WHERE order_id = $1 ORDER BY movement_id",
    )
    .bind(order_id)
    .fetch_all(&h.env.ctx.pool)
    .await
    .expect("movements")
}

fn mv(kind: &str, p: &str, delta: i32, quantity: i32) -> (String, String, i32, i32) {
    (kind.into(), p.into(), delta, quantity)
}

#[tokio::test]
async fn a_shipment_moves_held_units_to_shipped_once_under_redelivery() {
    let h = Harness::new().await;
    h.seed(&[("a", 5), ("b", 5)]).await;
    h.reserve(&[created("o1", &[("a", 2), ("b", 1)])]).await;
    assert_eq!(h.figures("a").await, (3, 2));
    let ship = shipped("o1");
    let report = h.release(std::slice::from_ref(&ship)).await;
    assert_eq!(report.processed, 1, "{report:?}");
    assert_eq!(
        h.figures("a").await,
        (3, 0),
        "available unchanged, nothing reserved"
    );
    assert_eq!(h.figures("b").await, (4, 0));
    assert_eq!(h.status("o1").await.as_deref(), Some("shipped"));
    // The same event again, and the same shipment under another event id.
    let again = h.release(&[ship]).await;
    assert_eq!(again.duplicates, 1, "{again:?}");
    h.release(&[shipped("o1")]).await;
    assert_eq!(h.figures("a").await, (3, 0));
    let m = movements(&h, "o1").await;
    assert_eq!(
        m,
        vec![
            mv("reserve", "a", -2, 0),
            mv("reserve", "b", -1, 0),
            mv("ship", "a", 0, 2),
            mv("ship", "b", 0, 1),
        ]
    );
    // A shipped order is not cancellable: a cancel that arrives anyway moves nothing.
    h.release(&[customer_cancelled("o1")]).await;
    assert_eq!(h.figures("a").await, (3, 0));
    assert_eq!(h.status("o1").await.as_deref(), Some("shipped"));
}

#[tokio::test]
async fn a_refund_with_restock_after_shipment_returns_units_once_per_refund_id() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    h.reserve(&[created("o1", &[("a", 3)])]).await;
    h.release(&[shipped("o1")]).await;
    let r = refund("o1", "r-1", &[("a", 1)], true);
    h.release(std::slice::from_ref(&r)).await;
    assert_eq!(h.figures("a").await, (3, 0));
    let cached = h.cached("a").await.expect("cache refreshed");
    assert_eq!(cached.available, 3);
    // Redelivered, and the same refund republished under another event id.
    h.release(&[r]).await;
    h.release(&[refund("o1", "r-1", &[("a", 1)], true)]).await;
    assert_eq!(h.figures("a").await, (3, 0), "restocked once");
    // A second refund may return the rest, but never more than shipped.
    h.release(&[refund("o1", "r-2", &[("a", 5)], true)]).await;
    assert_eq!(h.figures("a").await, (5, 0));
    h.release(&[refund("o1", "r-3", &[("a", 1)], true)]).await;
    assert_eq!(h.figures("a").await, (5, 0), "nothing left to return");
    let returns: Vec<_> = movements(&h, "o1")
        .await
        .into_iter()
        .filter(|m| m.0 == "return")
        .collect();
    assert_eq!(
        returns,
        vec![mv("return", "a", 1, 0), mv("return", "a", 2, 0)]
    );
}

#[tokio::test]
async fn a_refund_before_shipment_takes_the_units_out_of_the_orders_holding() {
    let h = Harness::new().await;
    h.seed(&[("a", 5), ("b", 5)]).await;
    h.reserve(&[created("o1", &[("a", 3), ("b", 1)])]).await;
    let r = refund("o1", "r-1", &[("a", 2), ("b", 1)], true);
    h.release(std::slice::from_ref(&r)).await;
    h.release(&[r]).await;
    assert_eq!(h.figures("a").await, (4, 1));
    assert_eq!(h.figures("b").await, (5, 0));
    assert_eq!(h.status("o1").await.as_deref(), Some("reserved"));
    // The shipment then ships what is left.
    h.release(&[shipped("o1")]).await;
    assert_eq!(h.figures("a").await, (4, 0));
    let ships: Vec<_> = movements(&h, "o1")
        .await
        .into_iter()
        .filter(|m| m.0 == "ship")
        .collect();
    assert_eq!(ships, vec![mv("ship", "a", 0, 1)]);
}

#[tokio::test]
async fn a_refund_without_restock_or_of_an_unknown_order_moves_nothing() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    h.reserve(&[created("o1", &[("a", 2)])]).await;
    h.release(&[refund("o1", "r-1", &[("a", 2)], false)]).await;
    h.release(&[refund("nobody", "r-2", &[("a", 2)], true)])
        .await;
    assert_eq!(h.figures("a").await, (3, 2));
    assert_eq!(
        h.status("nobody").await,
        None,
        "no reservation made up for it"
    );
    let report = h.release(&[refund("o1", "", &[("a", 1)], true)]).await;
    assert_eq!(
        report.parked.len(),
        1,
        "a restock without a refund id is parked"
    );
}

#[tokio::test]
async fn a_customer_cancel_of_a_confirmed_order_gives_its_units_back_once() {
    let h = Harness::new().await;
    h.seed(&[("a", 5)]).await;
    h.reserve(&[created("o1", &[("a", 2)])]).await;
    // The order was CONFIRMED (its reservation stands); the customer cancels it.
    let cancel = customer_cancelled("o1");
    h.release(std::slice::from_ref(&cancel)).await;
    assert_eq!(h.figures("a").await, (5, 0));
    assert_eq!(h.status("o1").await.as_deref(), Some("released"));
    h.release(&[cancel]).await;
    h.release(&[customer_cancelled("o1")]).await;
    assert_eq!(h.figures("a").await, (5, 0), "released once");
    let released = h.published_of(|p| match p {
        shared::contracts::Payload::StockReleased(r) => Some(r),
        _ => None,
    });
    assert_eq!(released.len(), 1);
}
