//! The order after its decision through the front door, on the whole stack: the customer's
//! cancel, an admin's ship, deliver and refund, each behind the HTTP API's authorizer and
//! read back with `GET /orders/{id}`.

mod common;

use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A registered user made admin the way `orderflow admin grant` does, then logged in.
async fn admin(app: &common::App) -> String {
    let email = format!("a{}@example.com", uuid::Uuid::new_v4().simple());
    let creds = json!({"email": email, "password": "correct horse battery"});
    assert_eq!(
        app.send("POST", "/users", None, Some(creds.clone()))
            .await
            .0,
        201
    );
    let ctx = &app.stack.ctx;
    let granted = identity::set_role(
        &ctx.pool,
        &ctx.sessions,
        &email,
        shared::session::Role::Admin,
    )
    .await
    .expect("grant");
    assert!(granted);
    let (s, body) = app.send("POST", "/sessions", None, Some(creds)).await;
    assert_eq!(s, 201, "{body}");
    body["token"].as_str().expect("token").to_string()
}

async fn refund(
    app: &common::App,
    token: &str,
    order_id: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}/admin/orders/{order_id}/refunds", app.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("HTTP");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_shipped_delivered_and_refunded_by_an_admin_and_a_pending_one_cancelled_by_its_customer()
 {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 10)]).await;
    let customer = app.user().await;
    let boss = admin(&app).await;

    // Fulfilment and a refund of a confirmed order.
    let order = app
        .order(
            &customer,
            json!([{"product_id": "sku-a", "quantity": 2}]),
            "tok_visa",
        )
        .await;
    assert_eq!(
        app.final_state(&customer, &order).await["status"],
        "CONFIRMED"
    );
    let ship = json!({"carrier": "DHL", "tracking_number": "JD014600003SE"});
    let (s, b) = app
        .send(
            "POST",
            &format!("/admin/orders/{order}/ship"),
            Some(&customer),
            Some(ship.clone()),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (403, "forbidden"),
        "a customer on /admin: {b}"
    );
    let (s, b) = app
        .send(
            "POST",
            &format!("/admin/orders/{order}/ship"),
            Some(&boss),
            Some(ship),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("SHIPPED")), "{b}");
    let (s, b) = app
        .send(
            "POST",
            &format!("/admin/orders/{order}/deliver"),
            Some(&boss),
            None,
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("DELIVERED")), "{b}");
    let (s, b) = app
        .send(
            "POST",
            &format!("/orders/{order}/cancel"),
            Some(&customer),
            None,
        )
        .await;
    assert_eq!((s, code(&b)), (409, "not_cancellable"), "{b}");
    let (s, b) = refund(
        &app,
        &boss,
        &order,
        "e2e-1",
        json!({"amount_cents": 500, "reason": "late"}),
    )
    .await;
    assert_eq!((s, b["status"].as_str()), (202, Some("requested")), "{b}");
    let (s, b) = refund(&app, &boss, &order, "e2e-2", json!({"amount_cents": 1501})).await;
    assert_eq!((s, code(&b)), (422, "exceeds_refundable"), "{b}");

    let (_, view) = app
        .send("GET", &format!("/orders/{order}"), Some(&customer), None)
        .await;
    assert_eq!(view["status"], "DELIVERED");
    assert_eq!(view["shipment"]["carrier"], "DHL");
    assert_eq!(view["refunds"][0]["amount_cents"], 500);
    assert_eq!(view["items"][0]["name"], "Product sku-a", "{view}");

    // A cancel as soon as the order is accepted: whatever the saga learns later, it stays
    // cancelled by the customer.
    let early = app
        .order(
            &customer,
            json!([{"product_id": "sku-a", "quantity": 1}]),
            "tok_visa",
        )
        .await;
    let (s, b) = app
        .send(
            "POST",
            &format!("/orders/{early}/cancel"),
            Some(&customer),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"order_id": early, "status": "CANCELLED", "reason": "customer_cancelled"})
    );
    app.quiet().await;
    let (_, view) = app
        .send("GET", &format!("/orders/{early}"), Some(&customer), None)
        .await;
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str()),
        (Some("CANCELLED"), Some("customer_cancelled"))
    );
    // Its stock came back (released or never reserved): 10 - 2 shipped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stock) = app.send("GET", "/products/sku-a/stock", None, None).await;
        if stock["available"] == 8 {
            break;
        }
        assert!(Instant::now() < deadline, "stock {stock}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
