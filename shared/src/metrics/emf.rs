//! The Embedded Metric Format side of `shared::metrics`: a buffer filled during a Lambda
//! invocation and written as JSON log lines (one CloudWatch EMF document each) at its end.

use super::{Kind, Metric, NAMESPACE, Unit};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// CloudWatch accepts at most 100 values per metric in one document.
const MAX_VALUES: usize = 100;

type Dims = Vec<(String, String)>;

struct Series {
    unit: Unit,
    kind: Kind,
    values: Vec<f64>,
}

#[derive(Default)]
struct Buffer {
    groups: BTreeMap<Dims, BTreeMap<&'static str, Series>>,
}

static BUFFER: Mutex<Option<Buffer>> = Mutex::new(None);

/// Starts buffering observations for EMF (the Lambda entry point calls it once).
pub fn enable() {
    if let Ok(mut b) = BUFFER.lock()
        && b.is_none()
    {
        *b = Some(Buffer::default());
    }
}

/// `routing_key` -> `RoutingKey`.
pub fn dimension_name(label: &str) -> String {
    label
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

pub(super) fn record(m: &'static Metric, labels: &[&str], value: f64) {
    let Ok(mut guard) = BUFFER.lock() else { return };
    let Some(buffer) = guard.as_mut() else { return };
    let dims: Dims = m
        .labels
        .iter()
        .zip(labels)
        .map(|(k, v)| (dimension_name(k), (*v).to_string()))
        .collect();
    let series = buffer
        .groups
        .entry(dims)
        .or_default()
        .entry(m.emf)
        .or_insert(Series {
            unit: m.unit,
            kind: m.kind,
            values: Vec::new(),
        });
    match (m.kind, series.values.first_mut()) {
        (Kind::Counter, Some(sum)) => *sum += value,
        (Kind::Gauge, Some(last)) => *last = value,
        _ => series.values.push(value),
    }
}

/// The buffered observations as EMF documents (one JSON object per line), emptying the
/// buffer. Empty when EMF is not enabled.
pub fn take(timestamp_ms: i64) -> Vec<String> {
    let groups = match BUFFER.lock() {
        Ok(mut guard) => match guard.as_mut() {
            Some(b) => std::mem::take(&mut b.groups),
            None => return vec![],
        },
        Err(_) => return vec![],
    };
    let mut lines = Vec::new();
    for (dims, metrics) in groups {
        let chunks = metrics
            .values()
            .map(|s| s.values.len().div_ceil(MAX_VALUES))
            .max()
            .unwrap_or(0);
        for chunk in 0..chunks {
            let mut doc = Map::new();
            let mut defs = Vec::new();
            for (name, s) in &metrics {
                let part: Vec<f64> = s
                    .values
                    .iter()
                    .skip(chunk * MAX_VALUES)
                    .take(MAX_VALUES)
                    .copied()
                    .collect();
                let value = match (s.kind, part.as_slice()) {
                    (_, []) => continue,
                    (Kind::Histogram, _) => json!(part),
                    (_, [v, ..]) => json!(v),
                };
                defs.push(json!({"Name": name, "Unit": s.unit.cloudwatch()}));
                doc.insert((*name).to_string(), value);
            }
            for (k, v) in &dims {
                doc.insert(k.clone(), Value::String(v.clone()));
            }
            let dim_names: Vec<&str> = dims.iter().map(|(k, _)| k.as_str()).collect();
            doc.insert(
                "_aws".into(),
                json!({
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [dim_names],
                        "Metrics": defs,
                    }],
                }),
            );
            lines.push(Value::Object(doc).to_string());
        }
    }
    lines
}

/// Writes the buffered documents to stdout, where Lambda's log agent picks them up.
pub fn flush() {
    use std::io::Write as _;
    let lines = take(chrono::Utc::now().timestamp_millis());
    if lines.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}
