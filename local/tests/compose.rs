//! docker-compose.yml agrees with the code, since no Docker engine runs in CI to try it:
//! images are pinned, every service publishes the port the localhost defaults expect,
//! credentials match the default URLs (and use RabbitMQ's real variable names), files it
//! mounts exist, and Prometheus scrapes the runner and RabbitMQ's Prometheus plugin.

use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).expect("compose file");
    serde_yaml::from_str(&text).expect("docker-compose.yml is YAML")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

/// `"5672:5672"` → (host 5672, container 5672); IP-bound forms `"127.0.0.1:1:2"` too.
fn published_ports(svc: &Value) -> Vec<(u16, u16)> {
    svc["ports"]
        .as_sequence()
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let s = match p {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        other => panic!("unsupported port entry {other:?}"),
                    };
                    let parts: Vec<&str> = s.split(':').collect();
                    let n = parts.len();
                    assert!(n >= 2, "port {s} publishes no host port");
                    let port = |x: &str| x.parse::<u16>().unwrap_or_else(|_| panic!("port {s}"));
                    (port(parts[n - 2]), port(parts[n - 1]))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Environment as a map, whether written as a mapping or as `KEY=value` items.
fn environment(svc: &Value) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                (k.as_str().expect("key").to_string(), v)
            })
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn defaults() -> shared::Config {
    shared::Config::from_lookup(|_| None).expect("defaults")
}

fn url(s: &str) -> url::Url {
    url::Url::parse(s).expect("default URL parses")
}

#[test]
fn every_image_is_pinned_to_a_version() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services");
    assert!(
        services.len() >= 5,
        "rabbitmq, redis, postgres, prometheus, grafana"
    );
    for (name, svc) in services {
        let image = svc["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name:?} has no image"));
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{name:?}: image {image} has no tag"));
        assert_ne!(tag, "latest", "{name:?}: {image}");
        // At least major.minor, so a rebuild cannot jump a minor version under us.
        let version = tag.trim_start_matches('v');
        let mut parts = version.split(['.', '-']);
        let major = parts.next().unwrap_or_default();
        let minor = parts.next().unwrap_or_default();
        assert!(
            major.chars().all(|c| c.is_ascii_digit())
                && !major.is_empty()
                && !minor.is_empty()
                && minor.chars().all(|c| c.is_ascii_digit()),
            "{name:?}: image {image} is not pinned to major.minor"
        );
    }
}

#[test]
fn ports_match_the_localhost_defaults_and_never_collide() {
    let doc = compose();
    let cfg = defaults();
    let expect = [
        ("postgres", url(&cfg.database_url).port().unwrap_or(5432)),
        ("redis", url(&cfg.redis_url).port().unwrap_or(6379)),
        ("rabbitmq", url(&cfg.amqp_url).port().unwrap_or(5672)),
    ];
    for (name, port) in expect {
        assert!(
            published_ports(service(&doc, name)).contains(&(port, port)),
            "{name} must publish {port}:{port} (the default URL's port)"
        );
    }
    let rabbit = published_ports(service(&doc, "rabbitmq"));
    for port in [15672, 15692] {
        assert!(rabbit.contains(&(port, port)), "rabbitmq publishes {port}");
    }

    let runner = runner_port();
    let mut host_ports = BTreeSet::new();
    for (name, svc) in doc["services"].as_mapping().expect("services") {
        for (host, _) in published_ports(svc) {
            assert_ne!(
                host, runner,
                "{name:?} takes the runner's HTTP port {runner} on the host"
            );
            assert_ne!(
                host,
                metrics_port(),
                "{name:?} takes the runner's metrics port on the host"
            );
            assert!(host_ports.insert(host), "host port {host} published twice");
        }
    }
}

/// The runner's HTTP port (`ORDERFLOW_HTTP_ADDR`, default 127.0.0.1:3000).
fn runner_port() -> u16 {
    if std::env::var_os("ORDERFLOW_HTTP_ADDR").is_some() {
        return 3000;
    }
    local::stack::StackOptions::from_env()
        .expect("runner defaults")
        .http_addr
        .port()
}

/// The runner's metrics port (`ORDERFLOW_METRICS_ADDR`, default 127.0.0.1:9464).
fn metrics_port() -> u16 {
    if std::env::var_os("ORDERFLOW_METRICS_ADDR").is_some() {
        return 9464;
    }
    local::stack::StackOptions::from_env()
        .expect("runner defaults")
        .metrics_addr
        .expect("metrics on by default")
        .port()
}

#[test]
fn credentials_match_the_default_urls_with_rabbitmqs_real_variable_names() {
    let doc = compose();
    let cfg = defaults();

    let rabbit = environment(service(&doc, "rabbitmq"));
    let amqp = url(&cfg.amqp_url);
    assert_eq!(
        rabbit.get("RABBITMQ_DEFAULT_USER").map(String::as_str),
        Some(amqp.username())
    );
    assert_eq!(
        rabbit.get("RABBITMQ_DEFAULT_PASS").map(String::as_str),
        amqp.password()
    );
    for key in rabbit.keys() {
        assert!(
            key.starts_with("RABBITMQ_"),
            "{key}: RabbitMQ only reads RABBITMQ_* variables (the article's RABMQ_DEFAULT_PASS is a typo)"
        );
    }

    let pg = environment(service(&doc, "postgres"));
    let db = url(&cfg.database_url);
    assert_eq!(
        pg.get("POSTGRES_USER").map(String::as_str),
        Some(db.username())
    );
    assert_eq!(
        pg.get("POSTGRES_DB").map(String::as_str),
        Some(db.path().trim_start_matches('/'))
    );
    // The default URL has no password: the server must trust local connections.
    if db.password().is_none() {
        assert_eq!(
            pg.get("POSTGRES_HOST_AUTH_METHOD").map(String::as_str),
            Some("trust")
        );
    }
}

#[test]
fn rabbitmq_enables_the_management_and_prometheus_plugins() {
    let doc = compose();
    let rabbit = service(&doc, "rabbitmq");
    let image = rabbit["image"].as_str().expect("image");
    assert!(image.contains("management"), "{image}: management plugin");
    let mut text = serde_yaml::to_string(&rabbit["command"]).expect("command");
    text.push_str(&serde_yaml::to_string(&rabbit["volumes"]).expect("volumes"));
    assert!(
        text.contains("rabbitmq_prometheus"),
        "the rabbitmq_prometheus plugin is enabled (port 15692)"
    );
}

#[test]
fn mounted_files_exist_in_the_repository() {
    let doc = compose();
    for (name, svc) in doc["services"].as_mapping().expect("services") {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let Some(spec) = v.as_str() else { continue };
            let host = spec.split(':').next().unwrap_or_default();
            if host.starts_with("./") {
                assert!(
                    root().join(host).exists(),
                    "{name:?} mounts {host}, which does not exist"
                );
            }
        }
    }
}

#[test]
fn prometheus_scrapes_the_runner_and_rabbitmq() {
    let doc = compose();
    let mount = service(&doc, "prometheus")["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|v| v.contains("/etc/prometheus/prometheus.yml"))
        .expect("prometheus mounts its config");
    let file = mount.split(':').next().expect("host path");
    let config: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join(file)).expect("prometheus config"),
    )
    .expect("prometheus config is YAML");
    let targets: Vec<String> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().into_iter().flatten())
        .flat_map(|sc| sc["targets"].as_sequence().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    // `/metrics` is on its own port (`ORDERFLOW_METRICS_ADDR`), not the API's.
    let runner = format!(":{}", metrics_port());
    assert!(
        targets
            .iter()
            .any(|t| t.starts_with("host.docker.internal") && t.ends_with(&runner)),
        "a job scrapes the runner's metrics on the host at {runner}: {targets:?}"
    );
    let api = format!(":{}", runner_port());
    assert!(
        !targets.iter().any(|t| t.ends_with(&api)),
        "nothing scrapes the API port {api}: {targets:?}"
    );
    assert!(
        targets.iter().any(|t| t == "rabbitmq:15692"),
        "a job scrapes RabbitMQ's Prometheus plugin: {targets:?}"
    );
    // host.docker.internal only resolves on Linux with the host-gateway mapping.
    let hosts =
        serde_yaml::to_string(&service(&doc, "prometheus")["extra_hosts"]).unwrap_or_default();
    assert!(
        hosts.contains("host.docker.internal:host-gateway"),
        "{hosts}"
    );
}
