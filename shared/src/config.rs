//! Typed configuration from the environment, read once per execution environment.

use crate::Encoding;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub redis_url: String,
    pub amqp_url: String,
    /// Prefixes exchange, queue and Redis key names so several stacks share one set of servers.
    pub prefix: String,
    /// Encoding of published messages; consumers accept both.
    pub wire_encoding: Encoding,
    /// How long an order may stay PENDING before the expiry schedule cancels it.
    pub pending_timeout: Duration,
    /// Sliding (idle) lifetime of a session token.
    pub session_ttl: Duration,
    /// Absolute lifetime of a session from login; use never extends it.
    pub session_max_lifetime: Duration,
    /// Rate limits on sign-up, login and order placement (README, "Security").
    pub rate_limits: crate::ratelimit::RateLimits,
    /// TTL of `stock:<product>` cache entries (60 s, as in the article).
    pub stock_cache_ttl: Duration,
    /// When set, notifications are POSTed here (with retries) instead of only logged.
    pub webhook_url: Option<String>,
    /// Postgres connections per execution environment. One invocation runs at a time per
    /// Lambda environment, so a handful suffices; the local runner hosts every function.
    pub db_pool_size: u32,
    /// Injected faults (`ORDERFLOW_FAULTS`); none by default.
    pub faults: crate::faults::Faults,
    /// Admission control of `POST /orders` (`ORDER_ADMISSION*`).
    pub admission: Admission,
    /// The deployment stage (`ORDERFLOW_STAGE`). Off Lambda it defaults to `local`; on Lambda
    /// it has no default, so a deploy that does not say which stage it is counts as
    /// production. Only test stages (`TEST_STAGES`) may run the simulated payment gateway or
    /// the development payment-token key.
    pub stage: String,
    /// Whether this process is a Lambda function (`AWS_LAMBDA_FUNCTION_NAME` is set).
    pub on_lambda: bool,
    /// `PAYMENT_TOKEN_KEY`: the key(s) sealing payment tokens for the payment service
    /// (`shared::payment_token`).
    pub payment_token_key: Option<Secret>,
    /// `PAYMENT_GATEWAY`: `simulated` or `http`, read by the payment functions.
    pub payment_gateway: Option<String>,
    /// `PAYMENT_GATEWAY_URL` and `PAYMENT_GATEWAY_API_KEY`, for `PAYMENT_GATEWAY=http`.
    pub payment_gateway_url: Option<String>,
    pub payment_gateway_api_key: Option<Secret>,
    /// `NOTIFICATION_WEBHOOK_SECRET` (`whsec_<base64>`): signs webhook deliveries.
    pub webhook_secret: Option<Secret>,
    /// `NOTIFICATION_WEBHOOK_SECRET_ARN`: where a deploy keeps that secret in Secrets Manager.
    pub webhook_secret_arn: Option<String>,
}

/// When `POST /orders` refuses new work: the backlog of undecided orders, drained at the
/// rate measured over `window`, must be decided within `headroom` of the order deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    /// `ORDER_ADMISSION=off` turns it off (default on).
    pub enabled: bool,
    /// Share of the deadline the backlog may take to drain (`ORDER_ADMISSION_HEADROOM`,
    /// default 0.5: the other half absorbs a drop in the drain rate).
    pub headroom: f64,
    /// Below this many undecided orders everything is admitted, whatever the measured rate
    /// (`ORDER_ADMISSION_MIN_BACKLOG`, default 200): a system that has just started has no
    /// rate yet.
    pub min_backlog: i64,
    /// How far back the drain rate is measured (`ORDER_ADMISSION_WINDOW_SECS`, default 10).
    pub window: Duration,
    /// How long one reading of the backlog serves an instance (`ORDER_ADMISSION_REFRESH_MS`,
    /// default 1000): one query a second however many orders arrive.
    pub refresh: Duration,
    /// Nothing is refused while the oldest undecided order has waited less than this
    /// (`ORDER_ADMISSION_MIN_WAIT_SECS`, default 5). The drain rate of the last seconds is the
    /// system's capacity only while it had work: after a lull it reads low, and a burst (a
    /// crowd of clients back from the same `Retry-After`) would be refused although it is
    /// decided in a second. A system that keeps up decides its oldest order quickly; one
    /// that does not lets it age.
    pub min_wait: Duration,
}

/// Stages that may use test doubles (the simulated gateway, the development token key).
pub const TEST_STAGES: [&str; 4] = ["local", "test", "ci", "dev"];

/// A secret from the environment: its `Debug` never shows it, so a logged or printed
/// `Config` cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Reads the process environment, with localhost defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Same as `from_env` over any lookup, so tests never touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|e| ConfigError {
                        name,
                        value: v.clone(),
                        reason: e.to_string(),
                    }),
            }
        };
        let wire_encoding = match get("ORDERFLOW_WIRE_ENCODING") {
            None => Encoding::Protobuf,
            Some(v) => v.parse().map_err(|reason| ConfigError {
                name: "ORDERFLOW_WIRE_ENCODING",
                value: v,
                reason,
            })?,
        };
        let db_pool_size = match get("DB_POOL_SIZE") {
            None => 5,
            Some(v) => v
                .parse()
                .map_err(|e: std::num::ParseIntError| ConfigError {
                    name: "DB_POOL_SIZE",
                    value: v.clone(),
                    reason: e.to_string(),
                })?,
        };
        let faults = match get("ORDERFLOW_FAULTS") {
            None => crate::faults::Faults::none(),
            Some(v) => crate::faults::Faults::parse(&v).map_err(|reason| ConfigError {
                name: "ORDERFLOW_FAULTS",
                value: v,
                reason,
            })?,
        };
        let rate_limits =
            crate::ratelimit::RateLimits::from_lookup(&get).map_err(|(name, value, reason)| {
                ConfigError {
                    name,
                    value,
                    reason,
                }
            })?;
        let positive = |name: &'static str, d: Duration| {
            if d.is_zero() {
                Err(ConfigError {
                    name,
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(d)
            }
        };
        let on_lambda = get("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let stage = match get("ORDERFLOW_STAGE").filter(|s| !s.trim().is_empty()) {
            Some(s) => s.trim().to_ascii_lowercase(),
            None if on_lambda => String::new(),
            None => "local".into(),
        };
        let secret = |name: &str| get(name).filter(|s| !s.is_empty()).map(Secret);
        let prefix = get("ORDERFLOW_PREFIX").unwrap_or_default();
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(ConfigError {
                name: "ORDERFLOW_PREFIX",
                value: prefix,
                reason: "only letters, digits and - _ . : are allowed".into(),
            });
        }
        Ok(Config {
            database_url: get("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/orderflow".into()),
            redis_url: get("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            amqp_url: get("AMQP_URL")
                .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            prefix,
            wire_encoding,
            pending_timeout: secs("ORDER_PENDING_TIMEOUT_SECS", 300)?,
            session_ttl: positive("SESSION_TTL_SECS", secs("SESSION_TTL_SECS", 3600)?)?,
            session_max_lifetime: positive(
                "SESSION_MAX_LIFETIME_SECS",
                secs("SESSION_MAX_LIFETIME_SECS", 12 * 3600)?,
            )?,
            rate_limits,
            stock_cache_ttl: secs("STOCK_CACHE_TTL_SECS", 60)?,
            webhook_url: get("NOTIFICATION_WEBHOOK_URL").filter(|s| !s.is_empty()),
            db_pool_size,
            faults,
            admission: Admission {
                enabled: !matches!(get("ORDER_ADMISSION").as_deref(), Some("off")),
                headroom: match get("ORDER_ADMISSION_HEADROOM") {
                    None => 0.5,
                    Some(v) => v
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|h| *h > 0.0 && *h <= 1.0)
                        .ok_or_else(|| ConfigError {
                            name: "ORDER_ADMISSION_HEADROOM",
                            value: v.clone(),
                            reason: "a share of the deadline, above 0 and at most 1".into(),
                        })?,
                },
                min_backlog: match get("ORDER_ADMISSION_MIN_BACKLOG") {
                    None => 200,
                    Some(v) => v.trim().parse::<i64>().map_err(|e| ConfigError {
                        name: "ORDER_ADMISSION_MIN_BACKLOG",
                        value: v.clone(),
                        reason: e.to_string(),
                    })?,
                },
                window: secs("ORDER_ADMISSION_WINDOW_SECS", 10)?.max(Duration::from_secs(1)),
                refresh: match get("ORDER_ADMISSION_REFRESH_MS") {
                    None => Duration::from_secs(1),
                    Some(v) => v
                        .trim()
                        .parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|e| ConfigError {
                            name: "ORDER_ADMISSION_REFRESH_MS",
                            value: v.clone(),
                            reason: e.to_string(),
                        })?,
                },
                min_wait: secs("ORDER_ADMISSION_MIN_WAIT_SECS", 5)?,
            },
            stage,
            on_lambda,
            payment_token_key: secret("PAYMENT_TOKEN_KEY"),
            payment_gateway: get("PAYMENT_GATEWAY").filter(|s| !s.is_empty()),
            payment_gateway_url: get("PAYMENT_GATEWAY_URL").filter(|s| !s.is_empty()),
            payment_gateway_api_key: secret("PAYMENT_GATEWAY_API_KEY"),
            webhook_secret: secret("NOTIFICATION_WEBHOOK_SECRET"),
            webhook_secret_arn: get("NOTIFICATION_WEBHOOK_SECRET_ARN").filter(|s| !s.is_empty()),
        })
    }

    /// Whether this stage may use test doubles (see `TEST_STAGES`).
    pub fn is_test_stage(&self) -> bool {
        TEST_STAGES.contains(&self.stage.as_str())
    }

    /// The AMQP virtual host named by the URL path (`/` when absent).
    pub fn vhost(&self) -> String {
        url::Url::parse(&self.amqp_url)
            .ok()
            .map(|u| u.path().trim_start_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .map(|p| p.replace("%2f", "/").replace("%2F", "/"))
            .unwrap_or_else(|| "/".into())
    }
}

/// Why a URL may not receive secrets or personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundUrlError {
    #[error("not a URL")]
    NotAUrl,
    /// Holds the URL with its password hidden.
    #[error("must use https (plain http is allowed to a loopback host only), got {0}")]
    Insecure(String),
}

/// `url` if secrets or personal data may be sent to it: https, or plain http to a loopback
/// host (local receivers and test stand-ins, where nothing crosses a network).
pub fn outbound_url(url: &str) -> Result<url::Url, OutboundUrlError> {
    let parsed = url::Url::parse(url).map_err(|_| OutboundUrlError::NotAUrl)?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(OutboundUrlError::Insecure(redact(url))),
    }
}

/// A URL fit for an error message: the password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_point_at_localhost() {
        let c = cfg(&[]).expect("defaults");
        assert!(c.database_url.contains("127.0.0.1:5432"));
        assert_eq!(c.vhost(), "/");
        assert_eq!(c.stock_cache_ttl, Duration::from_secs(60));
        assert_eq!(c.wire_encoding, Encoding::Protobuf);
        assert_eq!(c.session_max_lifetime, Duration::from_secs(12 * 3600));
        assert!(c.rate_limits.enabled);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = cfg(&[("SESSION_TTL_SECS", "soon")]).unwrap_err();
        assert_eq!(err.name, "SESSION_TTL_SECS");
        assert!(cfg(&[("ORDERFLOW_PREFIX", "a b")]).is_err());
        assert!(cfg(&[("ORDERFLOW_WIRE_ENCODING", "xml")]).is_err());
        assert_eq!(
            cfg(&[("SESSION_MAX_LIFETIME_SECS", "0")]).unwrap_err().name,
            "SESSION_MAX_LIFETIME_SECS"
        );
        assert_eq!(
            cfg(&[("ORDERFLOW_RATE_LIMIT_ORDERS_PER_USER", "many")])
                .unwrap_err()
                .name,
            "ORDERFLOW_RATE_LIMIT_ORDERS_PER_USER"
        );
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn the_stage_is_local_off_lambda_and_must_be_said_on_lambda() {
        let c = cfg(&[]).expect("defaults");
        assert_eq!(c.stage, "local");
        assert!(c.is_test_stage());
        let c = cfg(&[("AWS_LAMBDA_FUNCTION_NAME", "orderflow-payment-process")]).expect("ok");
        assert_eq!(c.stage, "");
        assert!(
            !c.is_test_stage(),
            "an unnamed stage on Lambda is production"
        );
        let c = cfg(&[("ORDERFLOW_STAGE", "Prod")]).expect("ok");
        assert!(!c.is_test_stage());
        let c = cfg(&[("ORDERFLOW_STAGE", "test")]).expect("ok");
        assert!(c.is_test_stage());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = cfg(&[
            ("PAYMENT_TOKEN_KEY", "c2VjcmV0LWtleQ=="),
            ("NOTIFICATION_WEBHOOK_SECRET", "whsec_c2VjcmV0"),
            ("PAYMENT_GATEWAY_API_KEY", "sk_test_123"),
        ])
        .expect("ok");
        let shown = format!("{c:?}");
        for secret in ["c2VjcmV0LWtleQ==", "whsec_c2VjcmV0", "sk_test_123"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(
            c.webhook_secret.as_ref().map(Secret::expose),
            Some("whsec_c2VjcmV0")
        );
    }

    #[test]
    fn secrets_go_over_https_or_to_a_loopback_host_only() {
        for ok in [
            "https://hooks.example.com/orderflow",
            "http://127.0.0.1:8080/hook",
            "http://[::1]:8080/hook",
            "http://localhost/hook",
        ] {
            assert!(outbound_url(ok).is_ok(), "{ok}");
        }
        let err = outbound_url("http://user:hunter2@example.com/hook").expect_err("plain");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(outbound_url("not a url"), Err(OutboundUrlError::NotAUrl));
        assert!(outbound_url("ftp://127.0.0.1/hook").is_err());
        assert!(outbound_url("http://127.0.0.1.example.com/hook").is_err());
    }

    #[test]
    fn vhost_comes_from_the_url_path() {
        let c = cfg(&[(
            "AMQP_URL",
            "amqps://u:p@b-1.mq.eu-west-1.amazonaws.com:5671/prod",
        )])
        .expect("ok");
        assert_eq!(c.vhost(), "prod");
    }
}
