//! openapi.yaml against what the API really is: its paths are exactly template.yaml's routes
//! (plus the front door's `/health`), public where the template is public, and the answers
//! of a running stack, errors included, match the schema documented for their status.

mod common;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn spec() -> Value {
    ops::openapi::parse().expect("openapi.yaml parses")
}

/// `METHOD /path` of every operation, and whether it is public (`security: []`).
fn operations(doc: &Value) -> Vec<(String, bool)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                let public = op.get("security") == Some(&json!([]));
                ops.push((format!("{} {path}", m.to_uppercase()), public));
            }
        }
    }
    ops
}

fn template_routes() -> Vec<(String, bool)> {
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    specs
        .iter()
        .flat_map(|s| s.triggers.iter())
        .filter_map(|t| match t {
            local::template::Trigger::Http {
                method,
                path,
                authorizer,
            } => Some((format!("{method} {path}"), authorizer.is_none())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_paths_are_the_templates_routes_and_each_is_public_exactly_where_the_template_is() {
    let doc = spec();
    let documented: BTreeSet<(String, bool)> = operations(&doc).into_iter().collect();
    let mut served: BTreeSet<(String, bool)> = template_routes().into_iter().collect();
    // The local front door's own route (API Gateway has none).
    served.insert(("GET /health".into(), true));
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, bool)>::new(),
        "documented but not served as documented (route, public)"
    );
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, bool)>::new(),
        "served but not documented as served (route, public)"
    );
}

#[test]
fn every_operation_documents_success_and_protected_ones_the_gateways_refusals() {
    let doc = spec();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{m} {path}: no success documented"
            );
            if op.get("security") != Some(&json!([])) {
                for status in ["401", "403"] {
                    assert!(
                        responses.contains_key(status),
                        "{m} {path}: a protected route must document {status}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_reference_resolves() {
    fn walk(v: &Value, doc: &Value, at: &str) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.strip_prefix('#').expect("local reference");
                    assert!(
                        doc.pointer(pointer).is_some(),
                        "{at}: {r} resolves to nothing"
                    );
                }
                for (k, child) in map {
                    walk(child, doc, &format!("{at}/{k}"));
                }
            }
            Value::Array(items) => items.iter().for_each(|c| walk(c, doc, at)),
            _ => {}
        }
    }
    let doc = spec();
    walk(&doc, &doc, "");
}

/// Validates answers against the document.
struct Contract {
    doc: Value,
    /// The document's table of error codes by status.
    codes: BTreeMap<u16, BTreeSet<String>>,
    checked: Vec<String>,
    problems: Vec<String>,
}

/// The `| status | codes |` table of the document's description: every code in backticks,
/// under each status of its row (`405, 408, 413` rows name one code per status, in order).
fn error_codes(doc: &Value) -> BTreeMap<u16, BTreeSet<String>> {
    let mut table: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    let text = doc["info"]["description"].as_str().unwrap_or_default();
    for row in text.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let (Some(statuses), Some(codes)) = (cells.first(), cells.get(1)) else {
            continue;
        };
        let statuses: Vec<u16> = statuses
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let codes: Vec<String> = codes
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
            .map(str::to_string)
            .collect();
        if statuses.len() > 1 && statuses.len() == codes.len() {
            for (status, code) in statuses.iter().zip(codes) {
                table.entry(*status).or_default().insert(code);
            }
        } else if let [status] = statuses[..] {
            table.entry(status).or_default().extend(codes);
        }
    }
    table
}

impl Contract {
    fn new() -> Self {
        let doc = spec();
        Contract {
            codes: error_codes(&doc),
            doc,
            checked: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The answer `status`/`body` to `method route` (the template path, `/orders/{id}`).
    fn check(&mut self, method: &str, route: &str, status: u16, body: &Value) {
        let at = format!("{method} {route} -> {status}");
        self.checked.push(at.clone());
        let op = &self.doc["paths"][route][method.to_lowercase()];
        if !op.is_object() {
            self.problems
                .push(format!("{at}: operation not documented"));
            return;
        }
        let Some(mut response) = op["responses"].get(status.to_string()).cloned() else {
            self.problems
                .push(format!("{at}: status not documented ({body})"));
            return;
        };
        if let Some(code) = body["error"]["code"].as_str()
            && !self.codes.get(&status).is_some_and(|c| c.contains(code))
        {
            self.problems.push(format!(
                "{at}: error code {code:?} is not in the document's table for {status}"
            ));
        }
        if let Some(r) = response.get("$ref").and_then(Value::as_str) {
            response = self.doc.pointer(&r[1..]).cloned().unwrap_or(Value::Null);
        }
        let Some(schema) = response.pointer("/content/application~1json/schema") else {
            if !body.is_null() {
                self.problems
                    .push(format!("{at}: documented without a body, got {body}"));
            }
            return;
        };
        // The schema with the document's components beside it, so `#/components/...`
        // references resolve from its root.
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let validator = match jsonschema::draft202012::new(&root) {
            Ok(v) => v,
            Err(e) => {
                self.problems
                    .push(format!("{at}: schema does not compile: {e}"));
                return;
            }
        };
        for e in validator.iter_errors(body) {
            self.problems
                .push(format!("{at}: {e} at {} in {body}", e.instance_path()));
        }
    }

    fn assert_clean(&self) {
        assert!(
            self.problems.is_empty(),
            "answers that break openapi.yaml:\n{}",
            self.problems.join("\n")
        );
    }
}

async fn call(
    app: &common::App,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.http.request(
        method.parse().expect("method"),
        format!("{}{path}", app.base),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("HTTP");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_documented_schemas_status_by_status() {
    let app = common::start().await;
    app.seed(&[("sku-a", 1000, 10), ("sku-b", 250, 1)]).await;
    let mut c = Contract::new();
    let hit = |c: &mut Contract, method: &str, route: &str, r: &(u16, Value)| {
        c.check(method, route, r.0, &r.1);
    };

    // Identity.
    let creds = json!({"email": "ada@example.com", "password": "correct horse"});
    let r = call(&app, "POST", "/users", &[], Some(creds.clone())).await;
    assert_eq!(r.0, 201, "{}", r.1);
    hit(&mut c, "POST", "/users", &r);
    hit(
        &mut c,
        "POST",
        "/users",
        &call(&app, "POST", "/users", &[], Some(creds.clone())).await,
    );
    hit(
        &mut c,
        "POST",
        "/users",
        &call(&app, "POST", "/users", &[], Some(json!({"email": "x"}))).await,
    );
    let r = call(&app, "POST", "/sessions", &[], Some(creds.clone())).await;
    hit(&mut c, "POST", "/sessions", &r);
    let token = r.1["token"].as_str().expect("token").to_string();
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    hit(
        &mut c,
        "POST",
        "/sessions",
        &call(
            &app,
            "POST",
            "/sessions",
            &[],
            Some(json!({"email": "ada@example.com", "password": "wrong password"})),
        )
        .await,
    );

    // Catalog.
    hit(
        &mut c,
        "GET",
        "/products",
        &call(&app, "GET", "/products", &[], None).await,
    );
    hit(
        &mut c,
        "GET",
        "/products/{id}/stock",
        &call(&app, "GET", "/products/sku-a/stock", &[], None).await,
    );
    hit(
        &mut c,
        "GET",
        "/products/{id}/stock",
        &call(&app, "GET", "/products/nope/stock", &[], None).await,
    );
    hit(
        &mut c,
        "GET",
        "/stock",
        &call(&app, "GET", "/stock?ids=sku-a,sku-b", &[], None).await,
    );
    hit(
        &mut c,
        "GET",
        "/stock",
        &call(&app, "GET", "/stock", &[], None).await,
    );

    // Orders: the gateway's refusals, the function's, and the happy path.
    let order =
        json!({"items": [{"product_id": "sku-a", "quantity": 2}], "payment_token": "tok_visa"});
    hit(
        &mut c,
        "POST",
        "/orders",
        &call(&app, "POST", "/orders", &[], Some(order.clone())).await,
    );
    hit(
        &mut c,
        "POST",
        "/orders",
        &call(
            &app,
            "POST",
            "/orders",
            &[("authorization", "Bearer ofs_nope")],
            Some(order.clone()),
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/orders",
        &call(&app, "POST", "/orders", &auth, Some(json!({"items": []}))).await,
    );
    hit(&mut c, "POST", "/orders", &call(&app, "POST", "/orders", &auth, Some(json!({"items": [{"product_id": "nope", "quantity": 1}], "payment_token": "tok_visa"}))).await);
    let r = call(&app, "POST", "/orders", &auth, Some(order.clone())).await;
    assert_eq!(r.0, 202, "{}", r.1);
    hit(&mut c, "POST", "/orders", &r);
    let order_id = r.1["order_id"].as_str().expect("order_id").to_string();
    let done = app.final_state(&token, &order_id).await;
    c.check("GET", "/orders/{id}", 200, &done);
    hit(
        &mut c,
        "GET",
        "/orders/{id}",
        &call(
            &app,
            "GET",
            &format!("/orders/{}", uuid::Uuid::now_v7()),
            &auth,
            None,
        )
        .await,
    );
    hit(
        &mut c,
        "GET",
        "/orders",
        &call(&app, "GET", "/orders?limit=1", &auth, None).await,
    );
    hit(
        &mut c,
        "GET",
        "/orders",
        &call(&app, "GET", "/orders?status=NOPE", &auth, None).await,
    );
    // A declined order: a CANCELLED order with its reason.
    let declined = app
        .order(
            &token,
            json!([{"product_id": "sku-b", "quantity": 1}]),
            "tok_chargeDeclined",
        )
        .await;
    let done = app.final_state(&token, &declined).await;
    c.check("GET", "/orders/{id}", 200, &done);

    // The document itself, and the front door's health.
    let r = call(&app, "GET", "/openapi.json", &[], None).await;
    assert_eq!(r.1, spec(), "GET /openapi.json serves openapi.yaml");
    hit(&mut c, "GET", "/openapi.json", &r);
    hit(
        &mut c,
        "GET",
        "/health",
        &call(&app, "GET", "/health", &[], None).await,
    );

    // The life after the decision, and the back office, as an admin and as a customer.
    let admin_creds = json!({"email": "root@example.com", "password": "correct horse"});
    call(&app, "POST", "/users", &[], Some(admin_creds.clone())).await;
    identity::set_role(
        &app.stack.ctx.pool,
        &app.stack.ctx.sessions,
        "root@example.com",
        shared::session::Role::Admin,
    )
    .await
    .expect("grant");
    let r = call(&app, "POST", "/sessions", &[], Some(admin_creds)).await;
    let admin_bearer = format!("Bearer {}", r.1["token"].as_str().expect("token"));
    let admin = [("authorization", admin_bearer.as_str())];
    let shipped = app
        .order(
            &token,
            json!([{"product_id": "sku-a", "quantity": 1}]),
            "tok_visa",
        )
        .await;
    assert_eq!(
        app.final_state(&token, &shipped).await["status"],
        "CONFIRMED"
    );
    let refunds = format!("/admin/orders/{order_id}/refunds");
    let refund = json!({"amount_cents": 150, "reason": "goodwill"});
    let key = [admin[0], ("idempotency-key", "openapi-1")];
    let r = call(&app, "POST", &refunds, &key, Some(refund.clone())).await;
    assert_eq!(r.0, 202, "{}", r.1);
    hit(&mut c, "POST", "/admin/orders/{id}/refunds", &r);
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/refunds",
        &call(
            &app,
            "POST",
            &refunds,
            &key,
            Some(json!({"amount_cents": 1})),
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/refunds",
        &call(&app, "POST", &refunds, &admin, Some(refund.clone())).await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/refunds",
        &call(
            &app,
            "POST",
            &refunds,
            &[admin[0], ("idempotency-key", "openapi-2")],
            Some(json!({"amount_cents": 1_000_000})),
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/refunds",
        &call(
            &app,
            "POST",
            &refunds,
            &[auth[0], ("idempotency-key", "openapi-3")],
            Some(refund.clone()),
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/refunds",
        &call(
            &app,
            "POST",
            &format!("/admin/orders/{declined}/refunds"),
            &[admin[0], ("idempotency-key", "openapi-4")],
            Some(refund),
        )
        .await,
    );
    let ship = format!("/admin/orders/{shipped}/ship");
    let parcel = json!({"carrier": "DHL", "tracking_number": "JD0001"});
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/ship",
        &call(&app, "POST", &ship, &admin, Some(json!({"carrier": ""}))).await,
    );
    let r = call(&app, "POST", &ship, &admin, Some(parcel.clone())).await;
    assert_eq!(r.0, 200, "{}", r.1);
    hit(&mut c, "POST", "/admin/orders/{id}/ship", &r);
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/ship",
        &call(
            &app,
            "POST",
            &format!("/admin/orders/{declined}/ship"),
            &admin,
            Some(parcel),
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/orders/{id}/cancel",
        &call(
            &app,
            "POST",
            &format!("/orders/{shipped}/cancel"),
            &auth,
            None,
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/deliver",
        &call(
            &app,
            "POST",
            &format!("/admin/orders/{shipped}/deliver"),
            &admin,
            None,
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/deliver",
        &call(
            &app,
            "POST",
            &format!("/admin/orders/{declined}/deliver"),
            &admin,
            None,
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/orders/{id}/deliver",
        &call(
            &app,
            "POST",
            &format!("/admin/orders/{}/deliver", uuid::Uuid::now_v7()),
            &admin,
            None,
        )
        .await,
    );
    let r = call(
        &app,
        "POST",
        &format!("/orders/{order_id}/cancel"),
        &auth,
        None,
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    hit(&mut c, "POST", "/orders/{id}/cancel", &r);
    hit(
        &mut c,
        "POST",
        "/orders/{id}/cancel",
        &call(
            &app,
            "POST",
            &format!("/orders/{}/cancel", uuid::Uuid::now_v7()),
            &auth,
            None,
        )
        .await,
    );
    c.check(
        "GET",
        "/orders/{id}",
        200,
        &app.final_state(&token, &shipped).await,
    );
    c.check(
        "GET",
        "/orders/{id}",
        200,
        &app.final_state(&token, &order_id).await,
    );

    // Catalog back office.
    let r = call(&app, "POST", "/admin/products", &admin, Some(json!({"product_id": "sku-new", "name": "New", "price_cents": 700, "currency": "EUR", "stock": 3, "low_stock_threshold": 1}))).await;
    assert_eq!(r.0, 201, "{}", r.1);
    hit(&mut c, "POST", "/admin/products", &r);
    let version = r.1["version"].to_string();
    hit(&mut c, "POST", "/admin/products", &call(&app, "POST", "/admin/products", &admin, Some(json!({"product_id": "sku-new", "name": "Again", "price_cents": 1, "currency": "EUR"}))).await);
    hit(
        &mut c,
        "POST",
        "/admin/products",
        &call(
            &app,
            "POST",
            "/admin/products",
            &admin,
            Some(json!({"product_id": "", "name": "x", "price_cents": -1, "currency": "euro"})),
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/products",
        &call(
            &app,
            "POST",
            "/admin/products",
            &auth,
            Some(json!({"product_id": "x", "name": "x", "price_cents": 1, "currency": "EUR"})),
        )
        .await,
    );
    let etag = format!("\"{version}\"");
    let patch = json!({"price_cents": 650});
    hit(
        &mut c,
        "PATCH",
        "/admin/products/{id}",
        &call(
            &app,
            "PATCH",
            "/admin/products/sku-new",
            &admin,
            Some(patch.clone()),
        )
        .await,
    );
    let r = call(
        &app,
        "PATCH",
        "/admin/products/sku-new",
        &[admin[0], ("if-match", &etag)],
        Some(patch.clone()),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    hit(&mut c, "PATCH", "/admin/products/{id}", &r);
    hit(
        &mut c,
        "PATCH",
        "/admin/products/{id}",
        &call(
            &app,
            "PATCH",
            "/admin/products/sku-new",
            &[admin[0], ("if-match", &etag)],
            Some(patch.clone()),
        )
        .await,
    );
    hit(
        &mut c,
        "PATCH",
        "/admin/products/{id}",
        &call(
            &app,
            "PATCH",
            "/admin/products/nope",
            &[admin[0], ("if-match", "\"1\"")],
            Some(patch),
        )
        .await,
    );
    let adjust = "/admin/products/sku-new/stock-adjustments";
    let delta = json!({"adjustment_id": "delivery-1", "delta": 5, "reason": "delivery"});
    let r = call(&app, "POST", adjust, &admin, Some(delta.clone())).await;
    assert_eq!(r.0, 201, "{}", r.1);
    hit(&mut c, "POST", "/admin/products/{id}/stock-adjustments", &r);
    hit(
        &mut c,
        "POST",
        "/admin/products/{id}/stock-adjustments",
        &call(&app, "POST", adjust, &admin, Some(delta)).await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/products/{id}/stock-adjustments",
        &call(
            &app,
            "POST",
            adjust,
            &admin,
            Some(json!({"adjustment_id": "take-1", "delta": -100, "reason": "stock take"})),
        )
        .await,
    );
    hit(
        &mut c,
        "POST",
        "/admin/products/{id}/stock-adjustments",
        &call(
            &app,
            "POST",
            adjust,
            &admin,
            Some(json!({"adjustment_id": "delivery-1", "delta": 6, "reason": "delivery"})),
        )
        .await,
    );
    hit(
        &mut c,
        "GET",
        "/products",
        &call(&app, "GET", "/products?limit=1", &[], None).await,
    );
    hit(
        &mut c,
        "GET",
        "/products",
        &call(&app, "GET", "/products?limit=0", &[], None).await,
    );

    // Logging out.
    hit(
        &mut c,
        "DELETE",
        "/sessions/current",
        &call(&app, "DELETE", "/sessions/current", &auth, None).await,
    );
    hit(
        &mut c,
        "DELETE",
        "/sessions",
        &call(&app, "DELETE", "/sessions", &[], None).await,
    );

    c.assert_clean();
    app.stop().await;
}

#[test]
fn the_checker_catches_an_undocumented_status_and_a_body_off_its_schema() {
    let mut c = Contract::new();
    c.check("GET", "/orders", 418, &json!({}));
    c.check(
        "GET",
        "/orders",
        200,
        &json!({"orders": [{"order_id": "x"}]}),
    );
    c.check(
        "POST",
        "/orders",
        400,
        &json!({"message": "no error object"}),
    );
    c.check("GET", "/nowhere", 200, &json!({}));
    c.check(
        "POST",
        "/orders",
        409,
        &json!({"error": {"code": "no_such_code", "message": "m"}}),
    );
    assert!(c.problems.len() >= 4, "{:#?}", c.problems);
    assert!(c.problems[0].contains("status not documented"));
    assert!(c.problems.iter().any(|p| p.contains("GET /orders -> 200")));
    assert!(c.problems.iter().any(|p| p.contains("POST /orders -> 400")));
    assert!(
        c.problems
            .iter()
            .any(|p| p.contains("operation not documented"))
    );
    assert!(
        c.problems
            .iter()
            .any(|p| p.contains("\"no_such_code\" is not in the document's table for 409")),
        "{:#?}",
        c.problems
    );
    let table = error_codes(&c.doc);
    assert!(table[&409].contains("not_cancellable"));
    assert!(table[&413].contains("payload_too_large"));
    assert!(!table[&408].contains("payload_too_large"));
}
