//! The suite's second act: the order's life after the decision, while the runner still
//! injects its in-process faults (errors, crashes between commit and publish, slow handlers,
//! duplicate deliveries) into every consumer, the refund, shipment and restock paths among
//! them. Confirmed orders are cancelled by their customers (refunded in full), refunded by an
//! admin by amount (the request sent twice under one key) or by a line with restock, shipped
//! and delivered; new orders are cancelled the moment they are accepted, racing their saga.
//! verify then judges money, stock and notifications as after the first act.

use super::client::Client;
use crate::child::post_retrying;
use anyhow::Context as _;
use serde_json::{Value, json};

/// What the second act asked for, for the report and the verdict.
#[derive(Debug, Default)]
pub(super) struct Act {
    pub cancelled: usize,
    pub refunds: usize,
    pub shipped: usize,
    /// Orders placed and cancelled at once; each must end CANCELLED(customer_cancelled).
    pub racing: Vec<String>,
    /// Answers that were not the documented ones.
    pub problems: Vec<String>,
}

async fn admin(client: &Client, ctx: &shared::context::Context) -> anyhow::Result<String> {
    let creds = json!({"email": format!("chaos-admin-{}@example.com", client.run_id), "password": "correct horse battery"});
    let base = &client.base;
    post_retrying(&client.http, &format!("{base}/users"), None, None, &creds).await?;
    // The checker's own Redis connection may be the one the Redis restart broke: its first
    // command fails once, and the manager reconnects for the next.
    let email = creds["email"].as_str().unwrap_or_default();
    let mut attempt = 0;
    let granted = loop {
        attempt += 1;
        match identity::set_role(
            &ctx.pool,
            &ctx.sessions,
            email,
            shared::session::Role::Admin,
        )
        .await
        {
            Ok(granted) => break granted,
            Err(e) if attempt < 5 => {
                tracing::warn!(error = %e, "granting the admin role failed, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context("granting the admin role")),
        }
    };
    anyhow::ensure!(granted, "the admin's account was not found");
    let (s, b) = post_retrying(
        &client.http,
        &format!("{base}/sessions"),
        None,
        None,
        &creds,
    )
    .await?;
    anyhow::ensure!(s == 201, "admin login answered {s}: {b}");
    Ok(b["token"].as_str().context("token")?.to_string())
}

fn expect(act: &mut Act, what: &str, want: u16, (status, body): &(u16, Value)) {
    if *status != want {
        act.problems
            .push(format!("{what}: answered {status} (wanted {want}): {body}"));
    }
}

/// `confirmed`: (order id, the index of its owner among the client's users).
pub(super) async fn run(
    client: &Client,
    ctx: &shared::context::Context,
    confirmed: &[(String, usize)],
    racing: usize,
) -> anyhow::Result<Act> {
    let admin = admin(client, ctx).await?;
    let base = client.base.clone();
    let mut act = Act::default();
    for (i, (order_id, user)) in confirmed.iter().enumerate() {
        let token = client.token(*user).await?;
        match i % 5 {
            0 => {
                let r = post_retrying(
                    &client.http,
                    &format!("{base}/orders/{order_id}/cancel"),
                    Some(&token),
                    None,
                    &json!({}),
                )
                .await?;
                expect(&mut act, "cancel of a confirmed order", 200, &r);
                act.cancelled += 1;
            }
            1 => {
                // One refund, asked twice under its key: the second answer is the first.
                let key = format!("chaos-{}-refund-{i}", client.run_id);
                let url = format!("{base}/admin/orders/{order_id}/refunds");
                let body = json!({"amount_cents": 100, "reason": "goodwill"});
                let first =
                    post_retrying(&client.http, &url, Some(&admin), Some(&key), &body).await?;
                expect(&mut act, "refund by amount", 202, &first);
                let again =
                    post_retrying(&client.http, &url, Some(&admin), Some(&key), &body).await?;
                if again.1["refund_id"] != first.1["refund_id"] {
                    act.problems.push(format!(
                        "order {order_id}: the same Idempotency-Key made another refund ({} then {})",
                        first.1, again.1
                    ));
                }
                act.refunds += 1;
            }
            2 => {
                let url = format!("{base}/admin/orders/{order_id}/ship");
                let r = post_retrying(
                    &client.http,
                    &url,
                    Some(&admin),
                    None,
                    &json!({"carrier": "DHL", "tracking_number": format!("CHAOS{i}")}),
                )
                .await?;
                expect(&mut act, "ship", 200, &r);
                let url = format!("{base}/admin/orders/{order_id}/deliver");
                let r = post_retrying(&client.http, &url, Some(&admin), None, &json!({})).await?;
                expect(&mut act, "deliver", 200, &r);
                act.shipped += 1;
            }
            3 => {
                let (_, order) = get(client, &token, order_id).await?;
                let product = order["items"][0]["product_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let key = format!("chaos-{}-lines-{i}", client.run_id);
                let url = format!("{base}/admin/orders/{order_id}/refunds");
                let body =
                    json!({"lines": [{"product_id": product, "quantity": 1}], "restock": true});
                let r = post_retrying(&client.http, &url, Some(&admin), Some(&key), &body).await?;
                expect(&mut act, "refund of a line with restock", 202, &r);
                act.refunds += 1;
            }
            _ => {}
        }
    }
    // Cancels racing their saga: each order is cancelled the moment it is accepted.
    for i in 0..racing {
        let user = i % client.users.len();
        let token = client.token(user).await?;
        let key = format!("chaos-{}-racing-{i}", client.run_id);
        let body = json!({"items": [{"product_id": "sku-mug", "quantity": 1}], "payment_token": "tok_visa"});
        let (s, b) = post_retrying(
            &client.http,
            &format!("{base}/orders"),
            Some(&token),
            Some(&key),
            &body,
        )
        .await?;
        anyhow::ensure!(s == 202, "racing order {i} answered {s}: {b}");
        let order_id = b["order_id"].as_str().context("order_id")?.to_string();
        let r = post_retrying(
            &client.http,
            &format!("{base}/orders/{order_id}/cancel"),
            Some(&token),
            None,
            &json!({}),
        )
        .await?;
        expect(&mut act, "cancel of a new order", 200, &r);
        act.racing.push(order_id);
    }
    Ok(act)
}

async fn get(client: &Client, token: &str, order_id: &str) -> anyhow::Result<(u16, Value)> {
    let r = client
        .http
        .get(format!("{}/orders/{order_id}", client.base))
        .bearer_auth(token)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}
