//! A small in-process counter registry rendered as Prometheus text on `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

type Key = (&'static str, Vec<(&'static str, String)>);

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, f64>>,
}

const HELP: &[(&str, &str)] = &[
    (
        "orderflow_invocations_total",
        "Function invocations by function and outcome (ok, failed).",
    ),
    (
        "orderflow_messages_total",
        "Messages handed to queue functions, by function and outcome (processed, duplicate, parked, failed).",
    ),
    (
        "orderflow_http_requests_total",
        "HTTP requests through the front door, by function and status code.",
    ),
];

impl Metrics {
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)], by: f64) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        );
        if let Ok(mut map) = self.counters.lock() {
            *map.entry(key).or_default() += by;
        }
    }

    pub fn render(&self) -> String {
        let map = self.counters.lock().map(|m| m.clone()).unwrap_or_default();
        let mut out = String::new();
        for (name, help) in HELP {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for ((n, labels), v) in map.iter().filter(|((n, _), _)| n == name) {
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| {
                        format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                    })
                    .collect();
                out.push_str(&format!("{n}{{{}}} {v}\n", labels.join(",")));
            }
        }
        out
    }
}
