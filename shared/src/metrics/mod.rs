//! One definition of Orderflow's metrics, two outputs.
//!
//! Every figure is declared once below (Prometheus name, CloudWatch name, unit, labels) and
//! recorded through it. Each observation goes to a process-wide Prometheus registry, which
//! the local runner serves as text on `/metrics`, and, once `emf::enable` has been called
//! (the Lambda entry point does), to a per-invocation buffer written as CloudWatch Embedded
//! Metric Format log lines (namespace `Orderflow`) at the end of each invocation: nothing
//! scrapes a Lambda, and CloudWatch Logs turns those lines into metrics by itself.
//! Label names become CloudWatch dimensions in CamelCase (`routing_key` -> `RoutingKey`).

use prometheus::core::Collector as _;
use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry};
use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

/// The CloudWatch namespace of the EMF lines.
pub const NAMESPACE: &str = "Orderflow";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One metric: its names in both worlds and how it is recorded.
#[derive(Debug)]
pub struct Metric {
    /// Prometheus name (`orderflow_..._total` for counters, base name for histograms).
    pub name: &'static str,
    /// CloudWatch metric name in the `Orderflow` namespace.
    pub emf: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub labels: &'static [&'static str],
    /// Histogram buckets (upper bounds); empty for counters and gauges.
    pub buckets: &'static [f64],
}

const LATENCY: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Saga durations run from milliseconds (both results already in) to the pending timeout.
const SAGA: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
const SIZES: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0];

const fn counter(
    name: &'static str,
    emf: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Metric {
    Metric {
        name,
        emf,
        help,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels,
        buckets: &[],
    }
}

const fn gauge(
    name: &'static str,
    emf: &'static str,
    help: &'static str,
    unit: Unit,
    labels: &'static [&'static str],
) -> Metric {
    Metric {
        name,
        emf,
        help,
        kind: Kind::Gauge,
        unit,
        labels,
        buckets: &[],
    }
}

const fn histogram(
    name: &'static str,
    emf: &'static str,
    help: &'static str,
    unit: Unit,
    labels: &'static [&'static str],
    buckets: &'static [f64],
) -> Metric {
    Metric {
        name,
        emf,
        help,
        kind: Kind::Histogram,
        unit,
        labels,
        buckets,
    }
}

pub static INVOCATIONS: Metric = counter(
    "orderflow_invocations_total",
    "Invocations",
    "Function invocations by function and outcome (ok, failed).",
    &["function", "outcome"],
);
pub static MESSAGES: Metric = counter(
    "orderflow_messages_total",
    "Messages",
    "Messages handed to queue functions, by function and outcome (processed, duplicate, parked, failed).",
    &["function", "outcome"],
);
pub static HTTP_REQUESTS: Metric = counter(
    "orderflow_http_requests_total",
    "HttpRequests",
    "HTTP requests by function and status code.",
    &["function", "status"],
);
pub static HTTP_DURATION: Metric = histogram(
    "orderflow_http_request_duration_seconds",
    "HttpRequestDuration",
    "Time to answer an HTTP request, by function.",
    Unit::Seconds,
    &["function"],
    LATENCY,
);
pub static HANDLER_DURATION: Metric = histogram(
    "orderflow_handler_duration_seconds",
    "HandlerDuration",
    "Time to apply one message (inbox, handler, outbox, commit), by function.",
    Unit::Seconds,
    &["function"],
    LATENCY,
);
pub static BATCH_DURATION: Metric = histogram(
    "orderflow_batch_duration_seconds",
    "BatchDuration",
    "Time to run one aws:rmq batch end to end (including publishing), by function.",
    Unit::Seconds,
    &["function"],
    LATENCY,
);
pub static BATCH_SIZE: Metric = histogram(
    "orderflow_batch_size",
    "BatchSize",
    "Messages per aws:rmq batch, by function.",
    Unit::Count,
    &["function"],
    SIZES,
);
pub static EVENTS_CONSUMED: Metric = counter(
    "orderflow_events_consumed_total",
    "EventsConsumed",
    "Events a queue function finished with (processed, duplicate or parked), by function and routing key.",
    &["function", "routing_key"],
);
pub static EVENTS_PUBLISHED: Metric = counter(
    "orderflow_events_published_total",
    "EventsPublished",
    "Events published and confirmed by the broker, by routing key.",
    &["routing_key"],
);
pub static PUBLISH_FAILURES: Metric = counter(
    "orderflow_publish_failures_total",
    "PublishFailures",
    "Publishes that failed (nack, timeout, lost connection, unroutable: no queue bound); the outbox keeps their events.",
    &[],
);
pub static CONFIRM_LATENCY: Metric = histogram(
    "orderflow_publish_confirm_seconds",
    "PublishConfirmLatency",
    "Time from publishing a batch of messages to the broker confirming all of them.",
    Unit::Seconds,
    &[],
    LATENCY,
);
pub static QUEUE_DEPTH: Metric = gauge(
    "orderflow_queue_messages",
    "QueueDepth",
    "Messages ready in a function's queue (polled from the broker).",
    Unit::Count,
    &["queue"],
);
pub static DEAD_LETTERS: Metric = gauge(
    "orderflow_dead_letter_messages",
    "DeadLetterDepth",
    "Messages in a function's dead-letter queue (polled from the broker).",
    Unit::Count,
    &["queue"],
);
pub static OUTBOX_LAG: Metric = gauge(
    "orderflow_outbox_lag_seconds",
    "OutboxLagSeconds",
    "Age of the oldest unpublished outbox row, per service schema (0 when drained).",
    Unit::Seconds,
    &["service"],
);
pub static OUTBOX_UNPUBLISHED: Metric = gauge(
    "orderflow_outbox_unpublished",
    "OutboxUnpublished",
    "Unpublished outbox rows, per service schema.",
    Unit::Count,
    &["service"],
);
pub static ORDERS: Metric = gauge(
    "orderflow_orders",
    "Orders",
    "Orders by status and reason (reason \"none\" when there is none).",
    Unit::Count,
    &["status", "reason"],
);
pub static OLDEST_PENDING: Metric = gauge(
    "orderflow_orders_pending_oldest_seconds",
    "OldestPendingOrderAge",
    "Age of the oldest PENDING order (0 when none is pending).",
    Unit::Seconds,
    &[],
);
pub static SAGA_DURATION: Metric = histogram(
    "orderflow_saga_duration_seconds",
    "SagaDuration",
    "Time from an order's creation to the saga's decision, by outcome (confirmed, out_of_stock, payment_declined, expired).",
    Unit::Seconds,
    &["outcome"],
    SAGA,
);
pub static STOCK_CACHE: Metric = counter(
    "orderflow_stock_cache_lookups_total",
    "StockCacheLookups",
    "Stock cache lookups by result (hit, miss, error).",
    &["result"],
);

/// Every metric, in the order `/metrics` lists them.
pub static ALL: &[&Metric] = &[
    &INVOCATIONS,
    &MESSAGES,
    &HTTP_REQUESTS,
    &HTTP_DURATION,
    &HANDLER_DURATION,
    &BATCH_DURATION,
    &BATCH_SIZE,
    &EVENTS_CONSUMED,
    &EVENTS_PUBLISHED,
    &PUBLISH_FAILURES,
    &CONFIRM_LATENCY,
    &QUEUE_DEPTH,
    &DEAD_LETTERS,
    &OUTBOX_LAG,
    &OUTBOX_UNPUBLISHED,
    &ORDERS,
    &OLDEST_PENDING,
    &SAGA_DURATION,
    &STOCK_CACHE,
];

enum Family {
    Counter(CounterVec),
    Gauge(GaugeVec),
    Histogram(HistogramVec),
}

struct Prom {
    registry: Registry,
    families: HashMap<&'static str, Family>,
}

static PROM: LazyLock<Prom> = LazyLock::new(|| {
    let registry = Registry::new();
    let mut families = HashMap::new();
    for m in ALL {
        let family = match m.kind {
            Kind::Counter => {
                CounterVec::new(Opts::new(m.name, m.help), m.labels).map(Family::Counter)
            }
            Kind::Gauge => GaugeVec::new(Opts::new(m.name, m.help), m.labels).map(Family::Gauge),
            Kind::Histogram => HistogramVec::new(
                HistogramOpts::new(m.name, m.help).buckets(m.buckets.to_vec()),
                m.labels,
            )
            .map(Family::Histogram),
        };
        // The definitions are constants checked by a unit test; a bad one is skipped, not fatal.
        let Ok(family) = family else { continue };
        // A metric without labels has one series: export it from the start (at 0), so that
        // rules and dashboards on it see a value before the first event.
        if m.labels.is_empty() {
            let _ = match &family {
                Family::Counter(c) => c.get_metric_with_label_values(&[] as &[&str]).map(drop),
                Family::Gauge(g) => g.get_metric_with_label_values(&[] as &[&str]).map(drop),
                Family::Histogram(h) => h.get_metric_with_label_values(&[] as &[&str]).map(drop),
            };
        }
        let collector: Box<dyn prometheus::core::Collector> = match &family {
            Family::Counter(c) => Box::new(c.clone()),
            Family::Gauge(g) => Box::new(g.clone()),
            Family::Histogram(h) => Box::new(h.clone()),
        };
        if registry.register(collector).is_ok() {
            families.insert(m.name, family);
        }
    }
    Prom { registry, families }
});

impl Metric {
    /// Adds 1 to a counter.
    pub fn inc(&'static self, labels: &[&str]) {
        self.add(labels, 1.0);
    }

    /// Adds `by` (>= 0) to a counter.
    pub fn add(&'static self, labels: &[&str], by: f64) {
        if by <= 0.0 || !by.is_finite() {
            return;
        }
        if let Some(Family::Counter(c)) = self.family(labels) {
            if let Ok(c) = c.get_metric_with_label_values(labels) {
                c.inc_by(by);
            }
            emf::record(self, labels, by);
        }
    }

    /// Sets a gauge.
    pub fn set(&'static self, labels: &[&str], value: f64) {
        if let Some(Family::Gauge(g)) = self.family(labels) {
            if let Ok(g) = g.get_metric_with_label_values(labels) {
                g.set(value);
            }
            emf::record(self, labels, value);
        }
    }

    /// Observes one value of a histogram.
    pub fn observe(&'static self, labels: &[&str], value: f64) {
        if !value.is_finite() {
            return;
        }
        if let Some(Family::Histogram(h)) = self.family(labels) {
            if let Ok(h) = h.get_metric_with_label_values(labels) {
                h.observe(value);
            }
            emf::record(self, labels, value);
        }
    }

    /// Drops every series of a gauge (a queue that no longer exists, for instance).
    pub fn reset(&'static self) {
        if let Some(Family::Gauge(g)) = PROM.families.get(self.name) {
            g.reset();
        }
    }

    fn family(&'static self, labels: &[&str]) -> Option<&'static Family> {
        // A wrong label count is a bug at the call site; recording nothing beats panicking
        // on an invocation path (prometheus' `with_label_values` would panic).
        debug_assert_eq!(labels.len(), self.labels.len(), "labels of {}", self.name);
        if labels.len() != self.labels.len() {
            return None;
        }
        PROM.families.get(self.name)
    }

    /// The series names this metric exports (`_bucket`, `_sum`, `_count` for histograms).
    pub fn series_names(&self) -> Vec<String> {
        match self.kind {
            Kind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", self.name))
                .collect(),
            _ => vec![self.name.to_string()],
        }
    }
}

/// The `service` label (CloudWatch dimension `Service`) of a service's Postgres schema:
/// the service's name, as the template's outbox-lag alarms spell it.
pub fn service_of_schema(schema: &str) -> &str {
    match schema {
        "orders" => "order",
        "payments" => "payment",
        "notifications" => "notification",
        other => other,
    }
}

/// Every series name the definitions can export.
pub fn defined_series() -> BTreeSet<String> {
    ALL.iter().flat_map(|m| m.series_names()).collect()
}

/// The registry in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let families = PROM.registry.gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_default()
}

/// Names of the series currently exported (families with at least one labelled child).
pub fn exported_series() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in ALL {
        let has_series = PROM.families.get(m.name).is_some_and(|f| {
            let collected = match f {
                Family::Counter(c) => c.collect(),
                Family::Gauge(g) => g.collect(),
                Family::Histogram(h) => h.collect(),
            };
            collected.iter().any(|mf| !mf.get_metric().is_empty())
        });
        if has_series {
            out.extend(m.series_names());
        }
    }
    out
}

/// Records one function invocation: its outcome (`answer` is `None` when it failed) and,
/// for an HTTP answer (a JSON object with `statusCode`), the request's status and duration.
/// Shared by the Lambda entry point and the local runner so both count the same way.
pub fn invocation(
    function: &str,
    answer: Option<&serde_json::Value>,
    elapsed: std::time::Duration,
) {
    INVOCATIONS.inc(&[function, if answer.is_some() { "ok" } else { "failed" }]);
    if let Some(status) = answer.and_then(|v| v.get("statusCode")?.as_u64()) {
        HTTP_REQUESTS.inc(&[function, &status.to_string()]);
        HTTP_DURATION.observe(&[function], elapsed.as_secs_f64());
    }
}

pub mod emf;

#[cfg(test)]
mod tests {
    use super::*;

    /// The EMF buffer is process-wide: tests that take from it run one at a time.
    static EMF_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn every_definition_is_registered_under_a_unique_name() {
        let names: BTreeSet<&str> = ALL.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), ALL.len());
        let emf: BTreeSet<&str> = ALL.iter().map(|m| m.emf).collect();
        assert_eq!(emf.len(), ALL.len());
        for m in ALL {
            assert!(PROM.families.contains_key(m.name), "{} registers", m.name);
            assert!(m.name.starts_with("orderflow_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
        }
    }

    #[test]
    fn observations_show_in_the_text_format_and_as_emf_documents() {
        let _serial = EMF_TESTS.lock();
        emf::enable();
        let _ = emf::take(0);
        INVOCATIONS.inc(&["unit-test-fn", "ok"]);
        INVOCATIONS.inc(&["unit-test-fn", "ok"]);
        SAGA_DURATION.observe(&["unit-test"], 0.2);
        SAGA_DURATION.observe(&["unit-test"], 0.4);
        OLDEST_PENDING.set(&[], 3.0);
        let text = render();
        assert!(
            text.contains(r#"orderflow_invocations_total{function="unit-test-fn",outcome="ok"} 2"#),
            "{text}"
        );
        assert!(text.contains("orderflow_saga_duration_seconds_bucket"));
        let docs: Vec<serde_json::Value> = emf::take(42)
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        let inv = docs
            .iter()
            .find(|d| d["Function"] == "unit-test-fn")
            .expect("invocation doc");
        assert_eq!(inv["Invocations"], 2.0);
        assert_eq!(inv["Outcome"], "ok");
        let directive = &inv["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Orderflow");
        assert_eq!(
            directive["Dimensions"][0],
            serde_json::json!(["Function", "Outcome"])
        );
        assert_eq!(inv["_aws"]["Timestamp"], 42);
        let saga = docs
            .iter()
            .find(|d| d["Outcome"] == "unit-test")
            .expect("saga doc");
        assert_eq!(saga["SagaDuration"], serde_json::json!([0.2, 0.4]));
        let pending = docs
            .iter()
            .find(|d| d.get("OldestPendingOrderAge").is_some())
            .expect("gauge doc");
        assert_eq!(
            pending["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([[]])
        );
        assert!(emf::take(0).is_empty(), "taking empties the buffer");
    }

    #[test]
    fn many_values_are_split_into_documents_of_at_most_100() {
        let _serial = EMF_TESTS.lock();
        emf::enable();
        let _ = emf::take(0);
        for i in 0..250 {
            BATCH_SIZE.observe(&["unit-test-split"], f64::from(i));
        }
        let docs: Vec<serde_json::Value> = emf::take(0)
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .filter(|d: &serde_json::Value| d["Function"] == "unit-test-split")
            .collect();
        let sizes: Vec<usize> = docs
            .iter()
            .map(|d| d["BatchSize"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn schemas_map_to_the_service_names_the_alarms_use() {
        let services: Vec<&str> = [
            "orders",
            "inventory",
            "payments",
            "notifications",
            "identity",
        ]
        .into_iter()
        .map(service_of_schema)
        .collect();
        assert_eq!(
            services,
            ["order", "inventory", "payment", "notification", "identity"]
        );
    }

    #[test]
    fn label_names_become_camel_case_dimensions() {
        assert_eq!(emf::dimension_name("routing_key"), "RoutingKey");
        assert_eq!(emf::dimension_name("service"), "Service");
    }

    #[test]
    fn an_http_answer_counts_its_status() {
        let answer = serde_json::json!({"statusCode": 404});
        invocation(
            "unit-test-http",
            Some(&answer),
            std::time::Duration::from_millis(3),
        );
        assert!(render().contains(
            r#"orderflow_http_requests_total{function="unit-test-http",status="404"} 1"#
        ));
    }
}
