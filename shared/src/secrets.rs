//! Secrets read from AWS Secrets Manager once, when an execution environment starts.
//!
//! On AWS the environment holds secret ARNs, never values (`AMQP_SECRET_ARN`,
//! `DATABASE_SECRET_ARN`, `REDIS_SECRET_ARN`, and the payment and webhook keys): anyone who
//! may read a function's configuration sees no password, and a rotated secret reaches every
//! environment started after the rotation. Off AWS the plaintext variables (`AMQP_URL`, ...)
//! work as before; when both are set the secret wins.
//!
//! A secret's `SecretString` is either the whole value (a URL, a key), or, for a URL, a
//! JSON object `{"username","password"}` (what RDS, Amazon MQ and generated secrets hold)
//! whose fields are put into the URL named by the plaintext variable (host, port, path),
//! percent-encoded, so a generated password needs no URL-safe alphabet.
//!
//! `GetSecretValue` is called with a SigV4-signed request (`crate::sigv4`) with the role's
//! credentials from the environment, at `AWS_ENDPOINT_URL_SECRETS_MANAGER` or
//! `AWS_ENDPOINT_URL` when set (tests point it at moto's server), else the regional endpoint
//! (reached through the VPC's Secrets Manager endpoint). No value ever appears in an error.

use crate::sigv4::{self, Credentials};
use std::collections::HashMap;
use std::time::Duration;

/// How a secret becomes a variable's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A connection URL: the whole URL, or credentials for the plaintext URL.
    Url,
    /// A key or token, taken as it is.
    Plain,
}

/// `(variable holding the ARN, variable it fills, kind)`.
pub const SECRET_VARIABLES: [(&str, &str, Kind); 6] = [
    ("AMQP_SECRET_ARN", "AMQP_URL", Kind::Url),
    ("DATABASE_SECRET_ARN", "DATABASE_URL", Kind::Url),
    ("REDIS_SECRET_ARN", "REDIS_URL", Kind::Url),
    (
        "PAYMENT_TOKEN_KEY_SECRET_ARN",
        "PAYMENT_TOKEN_KEY",
        Kind::Plain,
    ),
    (
        "PAYMENT_GATEWAY_API_KEY_SECRET_ARN",
        "PAYMENT_GATEWAY_API_KEY",
        Kind::Plain,
    ),
    (
        "NOTIFICATION_WEBHOOK_SECRET_ARN",
        "NOTIFICATION_WEBHOOK_SECRET",
        Kind::Plain,
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{arn_var} is set but {missing} is not: no credentials to call Secrets Manager")]
    NoCredentials {
        arn_var: &'static str,
        missing: &'static str,
    },
    #[error("{arn_var}={arn:?} is not a Secrets Manager ARN and no AWS_REGION is set")]
    NoRegion { arn_var: &'static str, arn: String },
    #[error("{arn_var}: Secrets Manager at {endpoint} could not be reached: {source}")]
    Unreachable {
        arn_var: &'static str,
        endpoint: String,
        source: reqwest::Error,
    },
    #[error(
        "{arn_var}: Secrets Manager refused GetSecretValue ({status}): {error_type}: {message}"
    )]
    Refused {
        arn_var: &'static str,
        status: u16,
        error_type: String,
        message: String,
    },
    /// What is wrong with the secret's shape; never its value.
    #[error("{arn_var}: the secret {problem}")]
    Shape {
        arn_var: &'static str,
        problem: String,
    },
}

/// Calls Secrets Manager; one per execution environment, used at init only.
pub struct SecretsClient {
    http: reqwest::Client,
    credentials: Credentials,
    region: Option<String>,
    endpoint: Option<String>,
}

impl SecretsClient {
    /// From the standard AWS variables; `arn_var` names the setting that needs them.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        arn_var: &'static str,
    ) -> Result<Self, SecretsError> {
        let need = |name: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or(SecretsError::NoCredentials {
                    arn_var,
                    missing: name,
                })
        };
        let credentials = Credentials {
            access_key_id: need("AWS_ACCESS_KEY_ID")?,
            secret_access_key: need("AWS_SECRET_ACCESS_KEY")?,
            session_token: get("AWS_SESSION_TOKEN").filter(|v| !v.is_empty()),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| SecretsError::Unreachable {
                arn_var,
                endpoint: "(client)".into(),
                source,
            })?;
        Ok(SecretsClient {
            http,
            credentials,
            region: get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .filter(|r| !r.is_empty()),
            endpoint: get("AWS_ENDPOINT_URL_SECRETS_MANAGER")
                .or_else(|| get("AWS_ENDPOINT_URL"))
                .filter(|e| !e.is_empty()),
        })
    }

    /// The secret's `SecretString`.
    pub async fn get_secret_string(
        &self,
        arn_var: &'static str,
        arn: &str,
    ) -> Result<String, SecretsError> {
        // The secret's own region first: an ARN says where it lives.
        let region =
            region_of_arn(arn)
                .or(self.region.clone())
                .ok_or_else(|| SecretsError::NoRegion {
                    arn_var,
                    arn: arn.to_string(),
                })?;
        let endpoint = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"));
        let url = url::Url::parse(&endpoint).map_err(|_| SecretsError::Shape {
            arn_var,
            problem: format!("endpoint {endpoint:?} is not a URL"),
        })?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(SecretsError::Shape {
                    arn_var,
                    problem: format!("endpoint {endpoint:?} has no host"),
                });
            }
        };
        let body = serde_json::json!({ "SecretId": arn }).to_string();
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let mut headers = vec![
            ("host".to_string(), host),
            ("x-amz-date".to_string(), amz_date.clone()),
            (
                "x-amz-target".to_string(),
                "secretsmanager.GetSecretValue".to_string(),
            ),
            (
                "content-type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            ),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token".to_string(), token.clone()));
        }
        let auth = sigv4::authorization(
            &self.credentials,
            &region,
            "secretsmanager",
            &amz_date,
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                payload: body.as_bytes(),
            },
        );
        let mut req = self.http.post(url).body(body);
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req
            .header("authorization", auth)
            .send()
            .await
            .map_err(|source| SecretsError::Unreachable {
                arn_var,
                endpoint: endpoint.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let answer: serde_json::Value =
            resp.json()
                .await
                .map_err(|source| SecretsError::Unreachable {
                    arn_var,
                    endpoint: endpoint.clone(),
                    source,
                })?;
        if !(200..300).contains(&status) {
            let field = |k: &str| {
                answer
                    .get(k)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let message = if field("message").is_empty() {
                field("Message")
            } else {
                field("message")
            };
            return Err(SecretsError::Refused {
                arn_var,
                status,
                error_type: field("__type"),
                message,
            });
        }
        answer
            .get("SecretString")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or(SecretsError::Shape {
                arn_var,
                problem: "has no SecretString (binary secrets are not supported)".into(),
            })
    }
}

/// `arn:aws:secretsmanager:eu-west-1:123456789012:secret:name` -> `eu-west-1`.
pub fn region_of_arn(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    (parts.len() >= 7 && parts[0] == "arn" && parts[2] == "secretsmanager" && !parts[3].is_empty())
        .then(|| parts[3].to_string())
}

/// The value a variable gets from its secret: see the module comment.
pub fn apply(
    arn_var: &'static str,
    target: &'static str,
    kind: Kind,
    plaintext: Option<&str>,
    secret: &str,
) -> Result<String, SecretsError> {
    let shape = |problem: String| SecretsError::Shape { arn_var, problem };
    let trimmed = secret.trim();
    if kind == Kind::Plain {
        if trimmed.is_empty() {
            return Err(shape("is empty".into()));
        }
        return Ok(trimmed.to_string());
    }
    if !trimmed.starts_with('{') {
        return match url::Url::parse(trimmed) {
            Ok(_) => Ok(trimmed.to_string()),
            Err(_) => Err(shape(
                "is neither a URL nor a JSON object with a password".into(),
            )),
        };
    }
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(trimmed)
        .map_err(|_| shape("starts with { but is not a JSON object".into()))?;
    let text = |k: &str| fields.get(k).and_then(serde_json::Value::as_str);
    let password = text("password").ok_or_else(|| shape("has no \"password\" field".into()))?;
    let base = plaintext.filter(|p| !p.is_empty()).ok_or_else(|| {
        shape(format!(
            "holds credentials only, so {target} must name the host (e.g. scheme://host:port/path)"
        ))
    })?;
    let mut url = url::Url::parse(base)
        .map_err(|_| shape(format!("cannot be put into {target}: it is not a URL")))?;
    let bad = || {
        shape(format!(
            "cannot be put into {target} (a URL without a host?)"
        ))
    };
    if let Some(user) = text("username") {
        url.set_username(user).map_err(|_| bad())?;
    }
    url.set_password(Some(password)).map_err(|_| bad())?;
    Ok(url.to_string())
}

/// The variables filled from secrets, for every `*_SECRET_ARN` that is set; empty (and no
/// call made) when none is.
pub async fn resolve(
    get: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>, SecretsError> {
    let mut filled = HashMap::new();
    let mut client = None;
    for (arn_var, target, kind) in SECRET_VARIABLES {
        let Some(arn) = get(arn_var).filter(|a| !a.trim().is_empty()) else {
            continue;
        };
        if client.is_none() {
            client = Some(SecretsClient::from_lookup(&get, arn_var)?);
        }
        let Some(c) = client.as_ref() else { continue };
        let secret = c.get_secret_string(arn_var, arn.trim()).await?;
        let value = apply(arn_var, target, kind, get(target).as_deref(), &secret)?;
        filled.insert(target.to_string(), value);
    }
    Ok(filled)
}

/// The configuration of this process: the environment, with the secrets it names read
/// first. What every function binary calls at init.
pub async fn config_from_env() -> anyhow::Result<crate::Config> {
    let env = |k: &str| std::env::var(k).ok();
    let filled = resolve(env).await?;
    if !filled.is_empty() {
        let mut names: Vec<&str> = filled.keys().map(String::as_str).collect();
        names.sort_unstable();
        tracing::info!(variables = ?names, "read from Secrets Manager");
    }
    Ok(crate::Config::from_lookup(|k| {
        filled.get(k).cloned().or_else(|| std::env::var(k).ok())
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_put_into_the_plaintext_url_percent_encoded() {
        let url = apply(
            "AMQP_SECRET_ARN",
            "AMQP_URL",
            Kind::Url,
            Some("amqps://b-1.mq.eu-west-1.amazonaws.com:5671/%2f"),
            r#"{"username":"orderflow","password":"p@ss:w/rd"}"#,
        )
        .expect("applied");
        assert_eq!(
            url,
            "amqps://orderflow:p%40ss%3Aw%2Frd@b-1.mq.eu-west-1.amazonaws.com:5671/%2f"
        );
        let redis = apply(
            "REDIS_SECRET_ARN",
            "REDIS_URL",
            Kind::Url,
            Some("rediss://master.of.cache.amazonaws.com:6379"),
            r#"{"password":"tok"}"#,
        )
        .expect("applied");
        assert_eq!(redis, "rediss://:tok@master.of.cache.amazonaws.com:6379");
    }

    #[test]
    fn a_whole_url_is_taken_as_it_is_and_bad_shapes_never_show_the_value() {
        assert_eq!(
            apply(
                "DATABASE_SECRET_ARN",
                "DATABASE_URL",
                Kind::Url,
                None,
                " postgres://u:p@h/db\n"
            )
            .expect("url"),
            "postgres://u:p@h/db"
        );
        for (plain, secret) in [
            (None, "hunter2-not-a-url"),
            (None, r#"{"password":"hunter2"}"#),
            (Some("amqps://h/"), r#"{"user":"hunter2"}"#),
            (Some("amqps://h/"), "{hunter2"),
        ] {
            let err = apply("AMQP_SECRET_ARN", "AMQP_URL", Kind::Url, plain, secret)
                .expect_err(secret)
                .to_string();
            assert!(err.starts_with("AMQP_SECRET_ARN"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        assert!(apply("X", "Y", Kind::Plain, None, "  ").is_err());
    }

    #[test]
    fn the_region_comes_from_the_arn() {
        assert_eq!(
            region_of_arn("arn:aws:secretsmanager:eu-west-1:123456789012:secret:of-db-AbC")
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_of_arn("of-db"), None);
    }

    #[tokio::test]
    async fn no_arn_means_no_call_and_an_arn_without_credentials_says_which_is_missing() {
        assert!(resolve(|_| None).await.expect("nothing to do").is_empty());
        let err = resolve(|k| {
            (k == "REDIS_SECRET_ARN")
                .then(|| "arn:aws:secretsmanager:eu-west-1:1:secret:x".to_string())
        })
        .await
        .expect_err("no credentials");
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
    }
}
