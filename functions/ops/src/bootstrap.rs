//! The bootstrap custom resource (`ops-bootstrap`): on Create and Update it runs every
//! migration and declares the broker topology of template.yaml (shards included: the same
//! `prepare` as `orderflow up` and `orderflow topology`), and can seed the demo catalog;
//! on Delete it answers SUCCESS and deletes nothing (data outlives a stack by design).
//!
//! CloudFormation waits for an answer PUT to the event's pre-signed `ResponseURL`; an
//! answer that never comes holds the stack for an hour. So every path answers: the work
//! runs under a deadline taken from the invocation's remaining time (a panic or a hang
//! becomes FAILED with its reason), a configuration that could not be read
//! is a FAILED, and the PUT itself is retried. Everything is idempotent (`CREATE ... IF NOT
//! EXISTS`, sqlx's migration history, AMQP declares), so a retried or repeated Update is
//! harmless.

use serde_json::{Value, json};
use shared::Config;
use std::time::Duration;

/// What CloudFormation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The fields of a custom-resource request the answer needs. Anything else in the event
/// (ServiceToken, ResourceType) is ignored.
#[derive(Debug, Clone)]
pub struct Request {
    pub request_type: Result<RequestType, String>,
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
    pub properties: Value,
    pub old_properties: Value,
}

impl Request {
    /// Reads an event; `Err` only when there is no `ResponseURL` to answer (then nobody can
    /// be told, and the invocation fails instead).
    pub fn parse(event: &Value) -> Result<Self, String> {
        let text = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_string);
        let response_url = text("ResponseURL")
            .filter(|u| !u.is_empty())
            .ok_or("not a CloudFormation custom-resource request: no ResponseURL")?;
        let request_type = match text("RequestType").as_deref() {
            Some("Create") => Ok(RequestType::Create),
            Some("Update") => Ok(RequestType::Update),
            Some("Delete") => Ok(RequestType::Delete),
            other => Err(format!("unknown RequestType {other:?}")),
        };
        Ok(Request {
            request_type,
            response_url,
            stack_id: text("StackId").unwrap_or_default(),
            request_id: text("RequestId").unwrap_or_default(),
            logical_resource_id: text("LogicalResourceId").unwrap_or_default(),
            physical_resource_id: text("PhysicalResourceId").filter(|p| !p.is_empty()),
            properties: event
                .get("ResourceProperties")
                .cloned()
                .unwrap_or(Value::Null),
            old_properties: event
                .get("OldResourceProperties")
                .cloned()
                .unwrap_or(Value::Null),
        })
    }

    /// Whether this request asks for the demo catalog to be seeded: `SeedDemoCatalog` true
    /// on Create, or turned on by an Update. Never again after that: seeding sets stock.
    pub fn seeds_demo_catalog(&self) -> bool {
        let on = |v: &Value| {
            v.get("SeedDemoCatalog")
                .map(|s| match s {
                    Value::Bool(b) => *b,
                    Value::String(s) => s.eq_ignore_ascii_case("true"),
                    _ => false,
                })
                .unwrap_or(false)
        };
        match self.request_type {
            Ok(RequestType::Create) => on(&self.properties),
            Ok(RequestType::Update) => on(&self.properties) && !on(&self.old_properties),
            _ => false,
        }
    }
}

/// The answer CloudFormation reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub success: bool,
    pub reason: String,
    pub data: Value,
}

impl Outcome {
    fn failed(reason: impl Into<String>) -> Self {
        Outcome {
            success: false,
            reason: reason.into(),
            data: json!({}),
        }
    }
}

/// The JSON body PUT to the response URL.
pub fn response_body(req: &Request, physical_id: &str, outcome: &Outcome) -> Value {
    // CloudFormation refuses a response over 4 KiB; a reason is cut well below that.
    let mut reason = outcome.reason.clone();
    if reason.len() > 1500 {
        let mut cut = 1500;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push_str(" ...");
    }
    json!({
        "Status": if outcome.success { "SUCCESS" } else { "FAILED" },
        "Reason": reason,
        "PhysicalResourceId": physical_id,
        "StackId": req.stack_id,
        "RequestId": req.request_id,
        "LogicalResourceId": req.logical_resource_id,
        "NoEcho": false,
        "Data": outcome.data,
    })
}

/// Migrations, topology and (when asked) the demo catalog.
async fn work(cfg: Config, seed: bool) -> anyhow::Result<Value> {
    let specs = crate::template::parse(crate::template::EMBEDDED)?;
    crate::prepare::prepare(&cfg, &specs).await?;
    let queues = crate::template::queue_specs(&specs).len();
    if seed {
        let ctx = shared::context::Context::new(cfg)?;
        inventory::upsert_products(&ctx, &crate::catalog::demo()).await?;
    }
    Ok(json!({
        "Schemas": crate::prepare::SCHEMAS.join(","),
        "Queues": queues.to_string(),
        "SeededDemoCatalog": seed.to_string(),
    }))
}

/// Runs the request within `budget` and says how it went; never panics, never hangs.
pub async fn decide(req: &Request, config: Result<Config, String>, budget: Duration) -> Outcome {
    let kind = match &req.request_type {
        Ok(k) => *k,
        Err(e) => return Outcome::failed(e.clone()),
    };
    if kind == RequestType::Delete {
        // Deleting the stack keeps the database and the broker's queues (and any orders and
        // messages in them); whoever deletes the data stores deletes the data.
        return Outcome {
            success: true,
            reason: "nothing deleted: data and topology outlive the stack".into(),
            data: json!({}),
        };
    }
    let cfg = match config {
        Ok(cfg) => cfg,
        Err(e) => return Outcome::failed(format!("configuration: {e}")),
    };
    // Run in place (not spawned: the migrations' futures are not `Send` for every
    // lifetime), a panic caught as an error and a hang cut by the budget.
    use futures::FutureExt as _;
    let run = std::panic::AssertUnwindSafe(work(cfg, req.seeds_demo_catalog())).catch_unwind();
    match tokio::time::timeout(budget, run).await {
        Ok(Ok(Ok(data))) => Outcome {
            success: true,
            reason: "migrations applied and topology declared".into(),
            data,
        },
        Ok(Ok(Err(e))) => Outcome::failed(format!("{e:#}")),
        Ok(Err(_panic)) => {
            Outcome::failed("the bootstrap failed unexpectedly (a panic; see its log)")
        }
        Err(_) => Outcome::failed(format!(
            "not done within {budget:?} (is the database or broker reachable from the \
             functions' subnets?)"
        )),
    }
}

/// PUTs the answer, retrying a few times; the pre-signed URL expects no content type.
pub async fn respond(http: &reqwest::Client, url: &str, body: &Value) -> Result<(), String> {
    let bytes = body.to_string();
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        let sent = http
            .put(url)
            .header("content-type", "")
            .header("content-length", bytes.len())
            .body(bytes.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("the response URL answered {}", r.status()),
            Err(e) => last = format!("the response URL could not be reached: {e}"),
        }
    }
    Err(last)
}

/// One invocation: decide, answer, and return the answer sent (what the log shows). An
/// `Err` only when nobody could be told.
pub async fn handle(
    event: Value,
    config: Result<Config, String>,
    budget: Duration,
    http: &reqwest::Client,
) -> Result<Value, String> {
    let req = Request::parse(&event)?;
    let outcome = decide(&req, config, budget).await;
    // The same id on every request for this resource: a changed id on Update would make
    // CloudFormation Delete the "old" one.
    let physical_id = req
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| format!("orderflow-bootstrap-{}", req.logical_resource_id));
    let body = response_body(&req, &physical_id, &outcome);
    if outcome.success {
        tracing::info!(reason = %outcome.reason, "bootstrap succeeded");
    } else {
        tracing::error!(reason = %outcome.reason, "bootstrap failed");
    }
    respond(http, &req.response_url, &body).await?;
    Ok(body)
}

/// The work's share of an invocation ending at `deadline`: what is left minus time to
/// answer (at least a second, so a short test budget still runs).
pub fn budget_until(deadline: std::time::SystemTime) -> Duration {
    deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(Duration::from_secs(20))
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, props: Value, old: Value) -> Value {
        json!({
            "RequestType": kind,
            "ResponseURL": "http://127.0.0.1:1/r",
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/of/1",
            "RequestId": "r-1",
            "LogicalResourceId": "Bootstrap",
            "ResourceProperties": props,
            "OldResourceProperties": old,
        })
    }

    #[test]
    fn the_demo_catalog_is_seeded_on_create_or_when_turned_on_never_again() {
        let on = json!({"SeedDemoCatalog": "true"});
        let off = json!({"SeedDemoCatalog": "false"});
        let seeds = |e: Value| Request::parse(&e).expect("parses").seeds_demo_catalog();
        assert!(seeds(event("Create", on.clone(), Value::Null)));
        assert!(!seeds(event("Create", off.clone(), Value::Null)));
        assert!(seeds(event("Update", on.clone(), off.clone())));
        assert!(!seeds(event("Update", on.clone(), on.clone())));
        assert!(!seeds(event("Delete", on, Value::Null)));
    }

    #[test]
    fn an_event_without_a_response_url_cannot_be_answered_and_a_bad_type_fails() {
        assert!(Request::parse(&json!({"RequestType": "Create"})).is_err());
        let req = Request::parse(&event("Replace", json!({}), Value::Null)).expect("parses");
        assert!(req.request_type.is_err());
    }

    #[tokio::test]
    async fn delete_succeeds_without_touching_anything_and_a_bad_config_fails_with_its_reason() {
        let del = Request::parse(&event("Delete", json!({}), Value::Null)).expect("parses");
        let out = decide(&del, Err("unused".into()), Duration::from_secs(1)).await;
        assert!(out.success);
        let create = Request::parse(&event("Create", json!({}), Value::Null)).expect("parses");
        let out = decide(
            &create,
            Err("AMQP_SECRET_ARN: denied".into()),
            Duration::from_secs(1),
        )
        .await;
        assert!(!out.success);
        assert!(
            out.reason.contains("AMQP_SECRET_ARN: denied"),
            "{}",
            out.reason
        );
    }

    #[test]
    fn a_long_reason_is_cut_to_fit_cloudformations_limit() {
        let req = Request::parse(&event("Create", json!({}), Value::Null)).expect("parses");
        let body = response_body(&req, "id", &Outcome::failed("é".repeat(2000)));
        assert!(body["Reason"].as_str().is_some_and(|r| r.len() < 1600));
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(body["PhysicalResourceId"], "id");
    }
}
