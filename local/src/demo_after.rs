//! The demo's second act: the order's life after the decision, through the same HTTP API a
//! shop's back office would use. A customer cancels a confirmed order (refunded in full), an
//! admin refunds part of one (twice with the same key: one refund), refunds a line with
//! restock, ships and delivers another, is refused a cancel of a shipped order, books a
//! delivery of stock (twice, applied once) and changes a price under If-Match (a stale version
//! is refused); a customer lists their history, and a fresh order is cancelled while its
//! saga runs.

use anyhow::Context as _;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// One confirmed order of the first act and its owner's token.
pub struct Confirmed {
    pub order_id: String,
    pub token: String,
}

/// What was asked and what the API answered, one line each, for the summary.
pub struct Act {
    pub lines: Vec<String>,
    /// Orders whose refunds are awaited before verify runs.
    pub refunded: Vec<(String, String)>,
}

struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
}

impl Api<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn post(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, token, headers, body)
            .await
    }
}

/// An admin for the back-office calls: registered over the API, granted the role as
/// `orderflow admin grant` does, then logged in (the grant ends earlier sessions).
async fn admin_token(
    stack: &crate::stack::Stack,
    api: &Api<'_>,
    run_id: &str,
) -> anyhow::Result<String> {
    let email = format!("demo-admin-{}@example.com", &run_id[..8]);
    let creds = json!({"email": email, "password": "correct horse battery"});
    let r = api
        .http
        .post(format!("{}/users", api.base))
        .json(&creds)
        .send()
        .await?;
    anyhow::ensure!(
        r.status().as_u16() == 201,
        "admin sign-up answered {}",
        r.status()
    );
    let granted = identity::set_role(
        &stack.ctx.pool,
        &stack.ctx.sessions,
        &email,
        shared::session::Role::Admin,
    )
    .await?;
    anyhow::ensure!(granted, "the admin's account was not found");
    let r = api
        .http
        .post(format!("{}/sessions", api.base))
        .json(&creds)
        .send()
        .await?;
    let body: Value = r.json().await?;
    Ok(body["token"]
        .as_str()
        .context("admin login gave no token")?
        .to_string())
}

fn said(what: &str, (status, body): &(u16, Value)) -> String {
    let detail = match body.get("error") {
        Some(e) => format!(
            "{} {}",
            e["code"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        ),
        None => body.to_string(),
    };
    format!("{what:<46} -> {status} {detail}")
}

pub async fn run(
    stack: &crate::stack::Stack,
    http: &reqwest::Client,
    run_id: &str,
    confirmed: &[Confirmed],
    customer_token: &str,
) -> anyhow::Result<Act> {
    let base = format!("http://{}", stack.http_addr);
    let api = Api { http, base: &base };
    anyhow::ensure!(
        confirmed.len() >= 4,
        "the second act needs 4 confirmed orders, the first act confirmed {}",
        confirmed.len()
    );
    let admin = admin_token(stack, &api, run_id).await?;
    let mut lines = Vec::new();
    let mut refunded = Vec::new();
    let (cancel, partial, lines_refund, ship) =
        (&confirmed[0], &confirmed[1], &confirmed[2], &confirmed[3]);

    // The customer cancels a confirmed order: refunded in full, stock returned.
    let r = api
        .post(
            &format!("/orders/{}/cancel", cancel.order_id),
            &cancel.token,
            &[],
            None,
        )
        .await?;
    anyhow::ensure!(r.0 == 200, "cancel answered {}: {}", r.0, r.1);
    lines.push(said("customer cancels a CONFIRMED order", &r));
    refunded.push((cancel.order_id.clone(), cancel.token.clone()));

    // A partial refund by amount, sent twice with one key: one refund.
    let key = format!("demo-{run_id}-refund");
    let body = json!({"amount_cents": 100, "reason": "late delivery goodwill"});
    let first = api
        .post(
            &format!("/admin/orders/{}/refunds", partial.order_id),
            &admin,
            &[("idempotency-key", &key)],
            Some(body.clone()),
        )
        .await?;
    anyhow::ensure!(first.0 == 202, "refund answered {}: {}", first.0, first.1);
    lines.push(said("admin refunds 1.00 of another", &first));
    let again = api
        .post(
            &format!("/admin/orders/{}/refunds", partial.order_id),
            &admin,
            &[("idempotency-key", &key)],
            Some(body),
        )
        .await?;
    anyhow::ensure!(
        again.1["refund_id"] == first.1["refund_id"],
        "the same Idempotency-Key made a second refund: {} then {}",
        first.1,
        again.1
    );
    lines.push(said("  the same request again (same key)", &again));
    refunded.push((partial.order_id.clone(), partial.token.clone()));

    // A refund of one unit of a line, put back on sale.
    let (_, order) = api
        .call(
            reqwest::Method::GET,
            &format!("/orders/{}", lines_refund.order_id),
            &lines_refund.token,
            &[],
            None,
        )
        .await?;
    let product = order["items"][0]["product_id"]
        .as_str()
        .context("order without lines")?;
    let r = api
        .post(
            &format!("/admin/orders/{}/refunds", lines_refund.order_id),
            &admin,
            &[("idempotency-key", &format!("demo-{run_id}-lines"))],
            Some(json!({"lines": [{"product_id": product, "quantity": 1}], "restock": true, "reason": "returned"})),
        )
        .await?;
    anyhow::ensure!(r.0 == 202, "line refund answered {}: {}", r.0, r.1);
    lines.push(said(&format!("admin refunds 1 x {product}, restocked"), &r));
    refunded.push((lines_refund.order_id.clone(), lines_refund.token.clone()));

    // Fulfilment: shipped, delivered; a cancel is then refused.
    let r = api
        .post(
            &format!("/admin/orders/{}/ship", ship.order_id),
            &admin,
            &[],
            Some(json!({"carrier": "DHL", "tracking_number": format!("DEMO{}", &run_id[..10])})),
        )
        .await?;
    anyhow::ensure!(r.0 == 200, "ship answered {}: {}", r.0, r.1);
    lines.push(said("admin ships an order", &r));
    let r = api
        .post(
            &format!("/orders/{}/cancel", ship.order_id),
            &ship.token,
            &[],
            None,
        )
        .await?;
    anyhow::ensure!(
        r.0 == 409,
        "cancelling a shipped order answered {}: {}",
        r.0,
        r.1
    );
    lines.push(said("  its customer tries to cancel it", &r));
    let r = api
        .post(
            &format!("/admin/orders/{}/deliver", ship.order_id),
            &admin,
            &[],
            None,
        )
        .await?;
    anyhow::ensure!(r.0 == 200, "deliver answered {}: {}", r.0, r.1);
    lines.push(said("admin marks it delivered", &r));

    // A customer refused the back office.
    let r = api
        .post(
            &format!("/admin/orders/{}/ship", ship.order_id),
            customer_token,
            &[],
            Some(json!({"carrier": "DHL", "tracking_number": "X"})),
        )
        .await?;
    anyhow::ensure!(r.0 == 403, "a customer on /admin answered {}: {}", r.0, r.1);
    lines.push(said("a customer calls an admin route", &r));

    // The catalog back office: a delivery of mugs (sent twice: applied once), a new price
    // under the version the admin read, and the same edit again with that stale version.
    let (_, page) = api
        .call(
            reqwest::Method::GET,
            "/products?limit=200",
            customer_token,
            &[],
            None,
        )
        .await?;
    let mug = page["products"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["product_id"] == "sku-mug"))
        .cloned()
        .context("sku-mug is not in the catalog")?;
    let delivery = json!({"adjustment_id": format!("demo-{run_id}-delivery"), "delta": 24, "reason": "supplier delivery"});
    let path = "/admin/products/sku-mug/stock-adjustments";
    let r = api.post(path, &admin, &[], Some(delivery.clone())).await?;
    anyhow::ensure!(r.0 == 201, "stock adjustment answered {}: {}", r.0, r.1);
    lines.push(said("admin books a delivery of 24 mugs", &r));
    let r = api.post(path, &admin, &[], Some(delivery)).await?;
    anyhow::ensure!(
        r.0 == 200,
        "the repeated adjustment answered {}: {}",
        r.0,
        r.1
    );
    lines.push(said("  the same delivery again (same id)", &r));
    let etag = format!("\"{}\"", mug["version"]);
    let price = json!({"price_cents": mug["price_cents"].as_i64().unwrap_or(0) + 100});
    let r = api
        .call(
            reqwest::Method::PATCH,
            "/admin/products/sku-mug",
            &admin,
            &[("if-match", &etag)],
            Some(price.clone()),
        )
        .await?;
    anyhow::ensure!(r.0 == 200, "price change answered {}: {}", r.0, r.1);
    lines.push(said("admin raises the mug's price (If-Match)", &r));
    let r = api
        .call(
            reqwest::Method::PATCH,
            "/admin/products/sku-mug",
            &admin,
            &[("if-match", &etag)],
            Some(price),
        )
        .await?;
    anyhow::ensure!(r.0 == 412, "a stale If-Match answered {}: {}", r.0, r.1);
    lines.push(said("  again with the version it read before", &r));

    // A customer's history, newest first.
    let r = api
        .call(
            reqwest::Method::GET,
            "/orders?limit=3",
            customer_token,
            &[],
            None,
        )
        .await?;
    anyhow::ensure!(r.0 == 200, "history answered {}: {}", r.0, r.1);
    let listed = r.1["orders"].as_array().map_or(0, Vec::len);
    lines.push(format!(
        "{:<46} -> 200 {listed} orders, next_cursor {}",
        "a customer lists their orders (GET /orders)",
        if r.1["next_cursor"].is_string() {
            "set"
        } else {
            "null"
        }
    ));

    // A cancel racing the saga: placed and cancelled at once.
    let (status, placed) = api
        .post(
            "/orders",
            customer_token,
            &[],
            Some(json!({"items": [{"product_id": "sku-mug", "quantity": 1}], "payment_token": "tok_visa"})),
        )
        .await?;
    anyhow::ensure!(status == 202, "order answered {status}: {placed}");
    let racing = placed["order_id"]
        .as_str()
        .context("no order_id")?
        .to_string();
    let r = api
        .post(
            &format!("/orders/{racing}/cancel"),
            customer_token,
            &[],
            None,
        )
        .await?;
    anyhow::ensure!(
        r.0 == 200,
        "cancel of a new order answered {}: {}",
        r.0,
        r.1
    );
    lines.push(said("a new order cancelled at once", &r));
    Ok(Act { lines, refunded })
}

/// Polls the orders until none of their refunds is still `requested`.
pub async fn wait_refunds(
    http: &reqwest::Client,
    base: &str,
    orders: &[(String, String)],
    limit: Duration,
) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + limit;
    loop {
        let mut settled = Vec::new();
        let mut waiting = false;
        for (order_id, token) in orders {
            let body: Value = http
                .get(format!("{base}/orders/{order_id}"))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            let refunds = body["refunds"].as_array().cloned().unwrap_or_default();
            waiting |= refunds.is_empty() || refunds.iter().any(|r| r["status"] == "requested");
            for r in refunds {
                settled.push(format!(
                    "order {order_id} ({}): refund {} {} {}",
                    body["status"].as_str().unwrap_or("?"),
                    r["amount_cents"],
                    r["currency"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or("?")
                ));
            }
        }
        if !waiting {
            return Ok(settled);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "refunds still requested after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
