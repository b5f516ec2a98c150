//! Observability: the dashboard and alert rules only use metrics the runner exports; after a
//! small stack run `/metrics` (parsed, not grepped) has every series with sensible values;
//! the timeline of an order cancelled for a declined payment tells its story in causal
//! order; and every event of one order belongs to one trace.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/promtext.rs"]
mod promtext;

use promtext::{Exposition, parse_exposition};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The metrics registry is process-wide: stack tests in this binary run one at a time, so
/// that each one's gauges are its own stack's.
static ONE_STACK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ops(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ops")
        .join(path)
}

#[test]
fn the_parser_reads_escapes_infinities_and_rejects_untyped_samples() {
    let text = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"q\\\"u\\\\o\\nte\",j=\"2\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2 1700000000000\nh_sum 1.5\nh_count 2\n";
    let e = parse_exposition(text).unwrap();
    assert_eq!(e.value("a_total", &[("k", "q\"u\\o\nte")]), Some(3.0));
    assert_eq!(e.check_histogram("h", &[]), (2.0, 1.5));
    assert!(parse_exposition("untyped_metric 1\n").is_err());
    assert!(parse_exposition("# TYPE g gauge\ng{a=\"1\" 2\n").is_err());
}

// ---- PromQL in the dashboard and the rules ---------------------------------------------

const PROMQL_WORDS: &[&str] = &[
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "deriv",
    "delta",
    "histogram_quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "clamp_min",
    "abs",
    "topk",
];

/// Metric names a PromQL expression reads: identifiers outside label matchers, strings,
/// ranges and grouping clauses that are not PromQL functions or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_string = false;
    let mut prev = ' ';
    for c in expr.chars() {
        match c {
            '"' if prev != '\\' => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => cleaned.push(c),
        }
        prev = c;
    }
    // Label lists of grouping clauses: `by (le, function)`.
    let mut words: Vec<String> = Vec::new();
    let mut skip_group = false;
    let mut in_group = false;
    let mut word = String::new();
    let flush = |word: &mut String, words: &mut Vec<String>, in_group: bool| {
        if !word.is_empty() && !in_group {
            words.push(std::mem::take(word));
        }
        word.clear();
    };
    for c in cleaned.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$' {
            word.push(c);
            continue;
        }
        let w = word.clone();
        flush(&mut word, &mut words, in_group);
        if [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ]
        .contains(&w.as_str())
        {
            skip_group = true;
        }
        if c == '(' && skip_group {
            in_group = true;
            skip_group = false;
        } else if c == ')' && in_group {
            in_group = false;
        } else if !c.is_whitespace() {
            skip_group = false;
        }
    }
    flush(&mut word, &mut words, in_group);
    words
        .into_iter()
        .filter(|w| !w.starts_with('$'))
        .filter(|w| !w.starts_with(|c: char| c.is_ascii_digit()))
        .filter(|w| !PROMQL_WORDS.contains(&w.as_str()))
        .collect()
}

fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(ops("grafana/dashboards/orderflow.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    exprs
}

fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(ops("prometheus/alerts.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect()
}

fn used_metric_names() -> BTreeSet<String> {
    dashboard_exprs()
        .iter()
        .chain(rule_exprs().iter())
        .flat_map(|e| metric_names(e))
        .collect()
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, function) (rate(orderflow_handler_duration_seconds_bucket{function=~"a|b"}[$__rate_interval]))) / on(x) orderflow_other > 0.05"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "orderflow_handler_duration_seconds_bucket".to_string(),
            "orderflow_other".to_string()
        ])
    );
}

#[test]
fn dashboard_and_alert_expressions_only_use_metrics_the_shared_registry_defines() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "{} dashboard queries", exprs.len());
    let used = used_metric_names();
    let defined = shared::metrics::defined_series();
    let unknown: Vec<&String> = used.difference(&defined).collect();
    assert!(
        unknown.is_empty(),
        "not defined in shared::metrics: {unknown:?}"
    );
    let titles: String = std::fs::read_to_string(ops("grafana/dashboards/orderflow.json")).unwrap();
    for needed in [
        "orderflow_messages_total",
        "orderflow_invocations_total",
        "orderflow_queue_messages",
        "orderflow_dead_letter_messages",
        "orderflow_outbox_lag_seconds",
        "orderflow_saga_duration_seconds_bucket",
        "orderflow_orders",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard or rules show {needed}"
        );
    }
    for q in ["0.50", "0.95", "0.99"] {
        assert!(titles.contains(&format!(
            "histogram_quantile({q}, sum by (le) (rate(orderflow_saga_duration_seconds_bucket"
        )));
    }
    let rules = rule_exprs().join("\n");
    for needed in [
        "orderflow_dead_letter_messages",
        "orderflow_outbox_lag_seconds",
        "orderflow_orders_pending_oldest_seconds",
        "orderflow_invocations_total",
        "orderflow_queue_messages",
    ] {
        assert!(rules.contains(needed), "an alert rule watches {needed}");
    }
}

#[test]
fn prometheus_loads_the_rules_and_grafana_is_provisioned_from_the_repository() {
    let prom: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(ops("prometheus/prometheus.yml")).unwrap())
            .unwrap();
    assert_eq!(prom["rule_files"][0].as_str(), Some("alerts.yml"));
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(ops("../docker-compose.yml")).unwrap())
            .unwrap();
    let mounts = |svc: &str| -> Vec<String> {
        compose["services"][svc]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        mounts("prometheus")
            .contains(&"./ops/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro".into())
    );
    let grafana = mounts("grafana");
    assert!(grafana.contains(&"./ops/grafana/provisioning:/etc/grafana/provisioning:ro".into()));
    assert!(grafana.contains(&"./ops/grafana/dashboards:/var/lib/grafana/dashboards:ro".into()));
    let provider: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(ops("grafana/provisioning/dashboards/orderflow.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
    let datasource: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(ops("grafana/provisioning/datasources/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(ops("grafana/dashboards/orderflow.json")).unwrap(),
    )
    .unwrap();
    let uid = datasource["datasources"][0]["uid"].as_str().unwrap();
    for panel in dash["panels"].as_array().unwrap() {
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], uid, "{}", panel["title"]);
        }
    }
}

// ---- A small stack run ------------------------------------------------------------------

/// `/metrics` lives on its own address (`ORDERFLOW_METRICS_ADDR`), never the API's.
async fn scrape(app: &common::App) -> Exposition {
    let metrics = app.stack.metrics_addr.expect("metrics served");
    assert_ne!(metrics, app.stack.http_addr);
    let text = app
        .http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Scrapes until `ready` holds (the poller runs every 500 ms in tests).
async fn scrape_until(app: &common::App, ready: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = scrape(app).await;
        if ready(&e) || Instant::now() > deadline {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ITEM: &str = "sku-obs";

async fn place_and_settle(app: &common::App, payment_token: &str) -> (String, String, Value) {
    let token = app.user().await;
    let id = app
        .order(
            &token,
            json!([{"product_id": ITEM, "quantity": 1}]),
            payment_token,
        )
        .await;
    let body = app.final_state(&token, &id).await;
    (id, token, body)
}

#[tokio::test]
async fn after_a_small_stack_run_metrics_has_every_series_with_sensible_values() {
    let _one = ONE_STACK.lock().await;
    let app = common::start().await;
    // Counters are process-wide: other tests of this binary may have counted before.
    let before = scrape(&app).await;
    let counted = |m: &Exposition, name: &str, labels: &[(&str, &str)]| {
        m.value(name, labels).unwrap_or(0.0) - before.value(name, labels).unwrap_or(0.0)
    };
    app.seed(&[(ITEM, 1999, 10)]).await;
    let (_, _, confirmed) = place_and_settle(&app, "tok_visa").await;
    assert_eq!(confirmed["status"], "CONFIRMED");
    let (_, _, declined) = place_and_settle(&app, "tok_chargeDeclined").await;
    assert_eq!(declined["reason"], "payment_declined");
    for _ in 0..2 {
        let (s, _) = app
            .send("GET", &format!("/products/{ITEM}/stock"), None, None)
            .await;
        assert_eq!(s, 200);
    }
    app.quiet().await;
    let queues = app.queues.clone();
    let m = scrape_until(&app, |m| {
        m.value("orderflow_orders", &[("status", "CONFIRMED")]) == Some(1.0)
            && m.value("orderflow_orders", &[("reason", "payment_declined")]) == Some(1.0)
            && queues.iter().all(|q| {
                m.value("orderflow_queue_messages", &[("queue", q)]) == Some(0.0)
                    && m.value("orderflow_dead_letter_messages", &[("queue", q)]) == Some(0.0)
            })
            && ["order", "inventory", "payment", "notification", "identity"]
                .iter()
                .all(|s| m.value("orderflow_outbox_lag_seconds", &[("service", s)]) == Some(0.0))
    })
    .await;

    // Every name the dashboard and the rules use is exported.
    let exported = m.names();
    let missing: Vec<String> = used_metric_names().difference(&exported).cloned().collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
    assert_eq!(
        exported,
        shared::metrics::exported_series(),
        "/metrics is the shared registry"
    );
    let on_api = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404, "the API port does not serve /metrics");

    // Orders by state, from this stack's database.
    assert_eq!(
        m.value("orderflow_orders", &[("status", "PENDING")]),
        Some(0.0)
    );
    assert_eq!(
        m.value(
            "orderflow_orders",
            &[("status", "CONFIRMED"), ("reason", "none")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "orderflow_orders",
            &[("status", "CANCELLED"), ("reason", "payment_declined")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("orderflow_orders_pending_oldest_seconds", &[]),
        Some(0.0)
    );

    // Broker and outboxes: every template queue and its DLQ polled, all drained.
    for q in &app.queues {
        assert_eq!(
            m.value("orderflow_queue_messages", &[("queue", q)]),
            Some(0.0),
            "{q}"
        );
        assert_eq!(
            m.value("orderflow_dead_letter_messages", &[("queue", q)]),
            Some(0.0),
            "{q}"
        );
    }
    for s in ["order", "inventory", "payment", "notification", "identity"] {
        assert_eq!(
            m.value("orderflow_outbox_unpublished", &[("service", s)]),
            Some(0.0),
            "{s}"
        );
    }

    // Invocations of every kind of trigger, none failed.
    for f in [
        "inventory-reserve",
        "payment-process",
        "order-saga",
        "notification-send",
        "order-timeline",
        "inventory-release",
        "payment-settle",
        "order-create",
        "order-get",
        "identity-register",
        "order-expire",
    ] {
        let ok = m
            .value(
                "orderflow_invocations_total",
                &[("function", f), ("outcome", "ok")],
            )
            .unwrap_or(0.0);
        assert!(ok >= 1.0, "{f} invoked: {ok}");
    }
    assert_eq!(
        counted(&m, "orderflow_invocations_total", &[("outcome", "failed")]),
        0.0
    );
    let processed = |f: &str| {
        m.value(
            "orderflow_messages_total",
            &[("function", f), ("outcome", "processed")],
        )
        .unwrap_or(0.0)
    };
    assert!(processed("order-saga") >= 4.0, "two results per order");
    assert!(
        processed("order-timeline") >= 10.0,
        "every event of both orders"
    );
    assert_eq!(
        counted(&m, "orderflow_messages_total", &[("outcome", "parked")]),
        0.0
    );

    // Events published and consumed per routing key.
    for key in [
        "order.created",
        "stock.reserved",
        "payment.processed",
        "order.confirmed",
        "order.cancelled",
        "stock.released",
        "payment.captured",
        "notification.sent",
    ] {
        let published = m
            .value("orderflow_events_published_total", &[("routing_key", key)])
            .unwrap_or(0.0);
        assert!(published >= 1.0, "{key} published {published}");
        let recorded = m
            .value(
                "orderflow_events_consumed_total",
                &[("function", "order-timeline"), ("routing_key", key)],
            )
            .unwrap_or(0.0);
        assert!(recorded >= 1.0, "{key} recorded by the timeline {recorded}");
    }
    assert!(
        m.value(
            "orderflow_events_published_total",
            &[("routing_key", "order.created")]
        )
        .unwrap()
            >= 2.0
    );

    // Histograms: well-formed, plausible.
    let (n, sum) = m.check_histogram(
        "orderflow_handler_duration_seconds",
        &[("function", "order-saga")],
    );
    assert!(n >= 4.0 && sum > 0.0 && sum / n < 5.0, "handler {n} {sum}");
    let (n, sum) = m.check_histogram(
        "orderflow_batch_duration_seconds",
        &[("function", "payment-process")],
    );
    assert!(n >= 1.0 && sum > 0.0, "batch {n} {sum}");
    let (n, sum) = m.check_histogram("orderflow_batch_size", &[("function", "order-timeline")]);
    assert!(
        n >= 1.0 && sum >= n,
        "every batch holds a message at least: {n} {sum}"
    );
    let (n, sum) = m.check_histogram("orderflow_publish_confirm_seconds", &[]);
    assert!(n >= 1.0 && sum > 0.0 && sum / n < 5.0, "confirms {n} {sum}");
    for outcome in ["confirmed", "payment_declined"] {
        let (n, sum) =
            m.check_histogram("orderflow_saga_duration_seconds", &[("outcome", outcome)]);
        assert!(
            n >= 1.0 && sum > 0.0 && sum / n < 30.0,
            "saga {outcome}: {n} {sum}"
        );
    }
    let (n, _) = m.check_histogram(
        "orderflow_http_request_duration_seconds",
        &[("function", "order-create")],
    );
    assert!(n >= 2.0);
    assert!(
        m.value(
            "orderflow_http_requests_total",
            &[("function", "order-create"), ("status", "202")]
        )
        .unwrap()
            >= 2.0
    );

    // The stock cache answered the stock reads.
    let lookups = m
        .value("orderflow_stock_cache_lookups_total", &[])
        .unwrap_or(0.0);
    let hits = m
        .value("orderflow_stock_cache_lookups_total", &[("result", "hit")])
        .unwrap_or(0.0);
    assert!(
        lookups >= 2.0 && hits >= 1.0,
        "{lookups} lookups, {hits} hits"
    );
    assert_eq!(counted(&m, "orderflow_publish_failures_total", &[]), 0.0);
    app.stop().await;
}

fn timeline_types(t: &local::timeline::Timeline) -> Vec<&str> {
    t.events.iter().map(|e| e.event_type.as_str()).collect()
}

fn position(t: &local::timeline::Timeline, event_type: &str) -> usize {
    t.events
        .iter()
        .position(|e| e.event_type == event_type)
        .unwrap_or_else(|| panic!("{event_type} in {:?}", timeline_types(t)))
}

#[tokio::test]
async fn the_timeline_of_an_order_cancelled_for_a_declined_payment_tells_its_story_in_causal_order()
{
    let _one = ONE_STACK.lock().await;
    let app = common::start().await;
    app.seed(&[(ITEM, 1999, 10)]).await;
    let (id, token, body) = place_and_settle(&app, "tok_chargeDeclined").await;
    assert_eq!(body["reason"], "payment_declined");
    app.quiet().await;
    let specs = local::template::parse(local::template::EMBEDDED).unwrap();
    let t = local::timeline::build(&app.stack.ctx, &specs, &id)
        .await
        .unwrap();
    println!("{}", local::timeline::render(&t));

    assert_eq!(t.status.as_deref(), Some("CANCELLED"));
    assert_eq!(t.reason.as_deref(), Some("payment_declined"));
    let types = timeline_types(&t);
    assert_eq!(types[0], "order.created", "{types:?}");
    let (created, reserved, declined, cancelled, released, notified) = (
        position(&t, "order.created"),
        position(&t, "stock.reserved"),
        position(&t, "payment.processed"),
        position(&t, "order.cancelled"),
        position(&t, "stock.released"),
        t.events
            .iter()
            .rposition(|e| e.event_type == "notification.sent")
            .unwrap(),
    );
    assert!(created < reserved && created < declined, "{types:?}");
    assert!(reserved < cancelled && declined < cancelled, "{types:?}");
    assert!(cancelled < released && cancelled < notified, "{types:?}");
    assert_eq!(t.events[declined].detail, "failed: card_declined");
    assert_eq!(t.events[cancelled].detail, "reason payment_declined");

    // Each event after its cause, with the consumers the template binds to it.
    let at: BTreeMap<&str, usize> = t
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id.as_str(), i))
        .collect();
    for (i, e) in t.events.iter().enumerate() {
        if let Some(cause) = &e.causation_id {
            assert!(at[cause.as_str()] < i, "{} after its cause", e.event_type);
        }
        assert!(e.published_at.is_some(), "{} published", e.event_type);
        assert!(e.recorded_at.is_some(), "{} recorded", e.event_type);
        for c in &e.consumers {
            assert_eq!(c.outcome, "processed", "{} by {}", e.event_type, c.function);
            assert!(c.attempts.unwrap() >= 1);
            let latency = c.latency_ms.unwrap();
            assert!((0..30_000).contains(&latency), "{latency} ms");
        }
    }
    let consumers = |ty: &str| -> BTreeSet<String> {
        t.events[position(&t, ty)]
            .consumers
            .iter()
            .map(|c| c.function.clone())
            .collect()
    };
    assert_eq!(
        consumers("order.created"),
        BTreeSet::from(
            ["inventory-reserve", "payment-process", "notification-send"].map(String::from)
        )
    );
    assert_eq!(
        consumers("stock.reserved"),
        BTreeSet::from(["order-saga".to_string()])
    );
    assert_eq!(
        consumers("payment.processed"),
        BTreeSet::from(["order-saga".to_string()])
    );
    assert_eq!(
        consumers("order.cancelled"),
        BTreeSet::from(
            ["inventory-release", "payment-settle", "notification-send"].map(String::from)
        )
    );
    assert_eq!(
        t.events[reserved].published_by.as_deref(),
        Some("inventory")
    );
    assert_eq!(t.events[declined].published_by.as_deref(), Some("payment"));
    assert_eq!(t.events[cancelled].published_by.as_deref(), Some("order"));

    // GET /orders/{id} shows the same events in the same order.
    let (s, body) = app
        .send("GET", &format!("/orders/{id}"), Some(&token), None)
        .await;
    assert_eq!(s, 200);
    let api: Vec<&str> = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let runner: Vec<&str> = t.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(api, runner);

    let text = local::timeline::render(&t);
    assert!(
        text.contains("payment.processed  (failed: card_declined)"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn all_events_of_one_order_share_its_trace_id_across_services() {
    let _one = ONE_STACK.lock().await;
    let app = common::start().await;
    app.seed(&[(ITEM, 1999, 10)]).await;
    let (confirmed, _, _) = place_and_settle(&app, "tok_visa").await;
    let (cancelled, _, _) = place_and_settle(&app, "tok_chargeDeclined").await;
    app.quiet().await;
    let specs = local::template::parse(local::template::EMBEDDED).unwrap();
    let mut traces = BTreeSet::new();
    for id in [&confirmed, &cancelled] {
        let t = local::timeline::build(&app.stack.ctx, &specs, id)
            .await
            .unwrap();
        assert!(t.events.len() >= 6, "{:?}", timeline_types(&t));
        let services: BTreeSet<&str> = t
            .events
            .iter()
            .filter_map(|e| e.published_by.as_deref())
            .collect();
        assert_eq!(
            services,
            BTreeSet::from(["order", "inventory", "payment", "notification"]),
            "events from every service"
        );
        let trace = t.trace_id.clone().expect("a trace id");
        for e in &t.events {
            assert_eq!(
                e.trace_id.as_ref(),
                Some(&trace),
                "{} of {id}",
                e.event_type
            );
        }
        traces.insert(trace);
    }
    assert_eq!(traces.len(), 2, "each order its own trace");
    app.stop().await;
}

#[tokio::test]
async fn a_parked_event_shows_in_the_timeline_with_its_reason_and_in_the_dead_letter_gauge() {
    use shared::contracts::{Payload, PaymentProcessed};
    let _one = ONE_STACK.lock().await;
    let app = common::start().await;
    app.seed(&[(ITEM, 1999, 10)]).await;
    let (id, _, _) = place_and_settle(&app, "tok_visa").await;
    // A payment result with no status: the saga can never apply it and parks it.
    let bad = shared::Envelope::new(
        Payload::PaymentProcessed(PaymentProcessed {
            order_id: id.clone(),
            status: 0,
            ..Default::default()
        }),
        None,
    );
    let ctx = &app.stack.ctx;
    ctx.publisher
        .publish(&[shared::publisher::OutMessage::event(
            &ctx.names,
            &bad,
            shared::Encoding::Json,
        )])
        .await
        .unwrap();
    app.quiet().await;
    let m = scrape_until(&app, |m| {
        m.value("orderflow_dead_letter_messages", &[("queue", "order-saga")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        m.value("orderflow_dead_letter_messages", &[("queue", "order-saga")]),
        Some(1.0)
    );
    assert!(
        m.value(
            "orderflow_messages_total",
            &[("function", "order-saga"), ("outcome", "parked")]
        )
        .unwrap()
            >= 1.0
    );

    let specs = local::template::parse(local::template::EMBEDDED).unwrap();
    let t = local::timeline::build(ctx, &specs, &id).await.unwrap();
    let e = t
        .events
        .iter()
        .find(|e| e.event_id == bad.event_id)
        .expect("the parked event is in the timeline");
    assert_eq!(e.detail, "unspecified status");
    assert_eq!(e.published_by, None, "no service's outbox holds it");
    let saga = &e.consumers[0];
    assert_eq!(
        (saga.function.as_str(), saga.outcome),
        ("order-saga", "parked")
    );
    let letter = saga.dead_letter.as_ref().unwrap();
    assert!(
        letter.reason.contains("invalid status"),
        "{}",
        letter.reason
    );
    assert!(letter.queue.ends_with("order-saga.dlq"), "{}", letter.queue);
    assert!(
        local::timeline::render(&t).contains(&format!("dead letter {}", letter.id)),
        "the operator gets the id `orderflow dlq replay` takes"
    );
    app.stop().await;
}
