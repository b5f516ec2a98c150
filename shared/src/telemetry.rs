//! Tracing setup (JSON on Lambda, readable locally) and W3C trace-context helpers.

use rand::RngCore as _;

/// Installs the global subscriber once; later calls are no-ops (tests call it freely).
pub fn init() {
    init_with_default("info,sqlx=warn,lapin=warn,hyper=warn");
}

/// Same, with the filter used when `RUST_LOG` is not set.
pub fn init_with_default(default_filter: &str) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("ORDERFLOW_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = fmt().with_env_filter(filter).with_target(false);
    let _ = if json {
        // CloudWatch adds its own timestamp and request id; keep lines flat and parseable.
        builder.json().flatten_event(true).without_time().try_init()
    } else {
        builder.try_init()
    };
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A fresh `traceparent` starting a new trace (sampled).
pub fn new_traceparent() -> String {
    format!("00-{}-{}-01", random_hex(16), random_hex(8))
}

/// A child span of `parent` in the same trace; a new trace if `parent` is not valid.
pub fn child_traceparent(parent: &str) -> String {
    match parse_traceparent(parent) {
        Some((trace_id, flags)) => format!("00-{trace_id}-{}-{flags}", random_hex(8)),
        None => new_traceparent(),
    }
}

/// `(trace_id, flags)` of a valid version-00 traceparent.
pub fn parse_traceparent(tp: &str) -> Option<(&str, &str)> {
    let mut parts = tp.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = version == "00"
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && trace != "0".repeat(32)
        && parts.next().is_none();
    ok.then_some((trace, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_keeps_the_trace_and_changes_the_span() {
        let root = new_traceparent();
        assert!(parse_traceparent(&root).is_some(), "{root}");
        let child = child_traceparent(&root);
        assert_eq!(root[..35], child[..35]);
        assert_ne!(root, child);
        assert!(parse_traceparent(&child_traceparent("garbage")).is_some());
    }
}
