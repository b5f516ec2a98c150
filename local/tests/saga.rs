//! The saga end to end on the real RabbitMQ, Redis and Postgres, through the bridge and the
//! HTTP front door, checked against the invariants after each scenario.

mod common;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_with_stock_and_a_good_card_is_confirmed_and_everything_adds_up() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 10), ("sku-b", 250, 5)]).await;
    let token = app.user().await;
    let id = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 2}, {"product_id": "sku-b", "quantity": 1}]),
            "tok_visa",
        )
        .await;
    let order = app.final_state(&token, &id).await;
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["reason"], serde_json::Value::Null);
    assert_eq!(order["total_cents"], 2250);
    let (s, stock) = app.send("GET", "/stock?ids=sku-a,sku-b", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        stock["stock"],
        json!([{"product_id": "sku-a", "available": 8}, {"product_id": "sku-b", "available": 4}])
    );
    app.verify().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_beyond_the_stock_is_cancelled_out_of_stock_and_its_authorization_voided() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 1)]).await;
    let token = app.user().await;
    let id = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 2}]),
            "tok_visa",
        )
        .await;
    let order = app.final_state(&token, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["reason"], "out_of_stock");
    app.verify().await;
    let payments = payment::payments(&app.stack.ctx.pool)
        .await
        .expect("payments");
    assert_eq!(
        payments
            .iter()
            .find(|p| p.order_id == id)
            .map(|p| p.status.as_str()),
        Some("voided")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_cancels_the_order_and_releases_its_stock() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 3)]).await;
    let token = app.user().await;
    for card in ["tok_chargeDeclined", "tok_chargeDeclinedInsufficientFunds"] {
        let id = app
            .order(
                &token,
                json!([{"product_id": "sku-a", "quantity": 1}]),
                card,
            )
            .await;
        let order = app.final_state(&token, &id).await;
        assert_eq!(order["status"], "CANCELLED", "{card}");
        assert_eq!(order["reason"], "payment_declined", "{card}");
    }
    app.verify().await;
    let (_, stock) = app.send("GET", "/products/sku-a/stock", None, None).await;
    assert_eq!(stock["available"], 3, "released after both cancellations");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_for_the_last_unit_confirm_exactly_one() {
    let app = common::start().await;
    app.seed(&[("sku-last", 5000, 1)]).await;
    let token = app.user().await;
    let placed = futures::future::join_all((0..12).map(|_| {
        app.order(
            &token,
            json!([{"product_id": "sku-last", "quantity": 1}]),
            "tok_visa",
        )
    }))
    .await;
    let mut confirmed = 0;
    for id in &placed {
        let o = app.final_state(&token, id).await;
        if o["status"] == "CONFIRMED" {
            confirmed += 1;
        } else {
            assert_eq!(o["reason"], "out_of_stock");
        }
    }
    assert_eq!(confirmed, 1, "exactly one order gets the last unit");
    app.verify().await;
    let (_, stock) = app
        .send("GET", "/products/sku-last/stock", None, None)
        .await;
    assert_eq!(stock["available"], 0);
    app.stop().await;
}

/// Re-publishes every event the system produced (same event ids, as a broker redelivery or
/// a relay re-send would) and checks nothing happens twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_of_every_event_type_has_no_second_effect() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 10)]).await;
    let token = app.user().await;
    let ok = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 1}]),
            "tok_visa",
        )
        .await;
    let declined = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 1}]),
            "tok_chargeDeclined",
        )
        .await;
    app.final_state(&token, &ok).await;
    app.final_state(&token, &declined).await;
    app.quiet().await;

    let mut events = Vec::new();
    for schema in local::registry::OUTBOX_SCHEMAS {
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT envelope FROM {schema}.outbox"
        )))
        .fetch_all(&app.stack.ctx.pool)
        .await
        .expect("outbox");
        events.extend(rows.into_iter().map(|(b,)| {
            shared::Envelope::decode(&b, shared::Encoding::Protobuf).expect("envelope")
        }));
    }
    let mut types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    types.sort();
    types.dedup();
    for t in [
        "order.created",
        "stock.reserved",
        "payment.processed",
        "order.confirmed",
        "order.cancelled",
        "stock.released",
        "payment.captured",
        "product.updated",
    ] {
        assert!(types.contains(&t), "scenario produced {t}: {types:?}");
    }
    let before_stock = inventory::stock_levels(&app.stack.ctx.pool)
        .await
        .expect("stock");
    let before_pay = payment::payments(&app.stack.ctx.pool)
        .await
        .expect("payments");
    let msgs: Vec<_> = events
        .iter()
        .flat_map(|e| {
            let m = shared::publisher::OutMessage::event(
                &app.stack.ctx.names,
                e,
                shared::Encoding::Protobuf,
            );
            [m.clone(), m]
        })
        .collect();
    app.stack
        .ctx
        .publisher
        .publish(&msgs)
        .await
        .expect("republish");
    app.quiet().await;

    assert_eq!(
        inventory::stock_levels(&app.stack.ctx.pool)
            .await
            .expect("stock")
            .iter()
            .map(|l| l.available)
            .collect::<Vec<_>>(),
        before_stock.iter().map(|l| l.available).collect::<Vec<_>>()
    );
    let after_pay = payment::payments(&app.stack.ctx.pool)
        .await
        .expect("payments");
    assert_eq!(
        after_pay.iter().map(|p| &p.status).collect::<Vec<_>>(),
        before_pay.iter().map(|p| &p.status).collect::<Vec<_>>()
    );
    assert_eq!(app.final_state(&token, &ok).await["status"], "CONFIRMED");
    assert_eq!(
        app.final_state(&token, &declined).await["status"],
        "CANCELLED"
    );
    app.verify().await;
    app.stop().await;
}
