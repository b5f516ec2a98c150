//! The HTTP API's Lambda authorizers as template.yaml declares them (`Auth` of each
//! `AWS::Serverless::HttpApi`) and which of them guards each route: what the local front
//! door needs to run the same authorizer function the way API Gateway does.

use anyhow::Context as _;
use serde_yaml::Value;
use std::time::Duration;

/// An API Gateway REQUEST authorizer (payload 2.0, simple responses) as the HTTP API
/// declares it: the function, the header it reads, how long an answer is cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorizer {
    pub name: String,
    pub binary: String,
    /// The identity source header, lower-case (`authorization`).
    pub header: String,
    /// `ReauthorizeEvery` (API Gateway caches an answer per header value this long).
    pub ttl: Duration,
}

/// `!GetAtt X.Arn` (either spelling) -> `X`.
fn get_att_target(v: &Value) -> Option<String> {
    let Value::Tagged(t) = v else { return None };
    match &t.value {
        Value::String(s) => s.split('.').next().map(str::to_string),
        Value::Sequence(seq) => seq.first().and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The authorizers of every `AWS::Serverless::HttpApi`, by API logical id: (default
/// authorizer, authorizers by name).
pub(crate) type ApiAuth = std::collections::BTreeMap<String, (Option<String>, Vec<Authorizer>)>;

pub(crate) fn api_authorizers(resources: &serde_yaml::Mapping) -> anyhow::Result<ApiAuth> {
    let binary_of = |logical: &str| -> Option<String> {
        resources
            .get(logical)?
            .get("Metadata")?
            .get("BuildProperties")?
            .get("Binary")?
            .as_str()
            .map(str::to_string)
    };
    let mut apis = ApiAuth::new();
    for (id, res) in resources {
        if res.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::HttpApi") {
            continue;
        }
        let id = id.as_str().unwrap_or_default().to_string();
        let auth = res.get("Properties").and_then(|p| p.get("Auth"));
        let default = auth
            .and_then(|a| a.get("DefaultAuthorizer"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut list = Vec::new();
        if let Some(map) = auth
            .and_then(|a| a.get("Authorizers"))
            .and_then(Value::as_mapping)
        {
            for (name, def) in map {
                let name = name.as_str().unwrap_or_default().to_string();
                let target = def
                    .get("FunctionArn")
                    .and_then(get_att_target)
                    .with_context(|| {
                        format!("{id}: authorizer {name} has no !GetAtt FunctionArn")
                    })?;
                let binary = binary_of(&target)
                    .with_context(|| format!("{id}: authorizer {name}: {target} has no Binary"))?;
                let identity = def.get("Identity");
                let header = identity
                    .and_then(|i| i.get("Headers"))
                    .and_then(Value::as_sequence)
                    .and_then(|h| h.first())
                    .and_then(Value::as_str)
                    .with_context(|| format!("{id}: authorizer {name} names no Identity.Headers"))?
                    .to_ascii_lowercase();
                let ttl = identity
                    .and_then(|i| i.get("ReauthorizeEvery"))
                    .and_then(Value::as_u64)
                    .unwrap_or(300);
                list.push(Authorizer {
                    name,
                    binary,
                    header,
                    ttl: Duration::from_secs(ttl),
                });
            }
        }
        if let Some(d) = &default {
            anyhow::ensure!(
                list.iter().any(|a| &a.name == d),
                "{id}: DefaultAuthorizer {d} is not among its Authorizers"
            );
        }
        apis.insert(id, (default, list));
    }
    Ok(apis)
}

/// The authorizer of one HttpApi event: its own `Auth.Authorizer` (`NONE` for public),
/// else the API's default.
pub(crate) fn route_authorizer(
    apis: &ApiAuth,
    logical_id: &str,
    props: &Value,
) -> anyhow::Result<Option<Authorizer>> {
    let api = props.get("ApiId").map(|v| match v {
        Value::Tagged(t) => t.value.as_str().unwrap_or_default().to_string(),
        other => other.as_str().unwrap_or_default().to_string(),
    });
    let Some((default, list)) = api.as_deref().and_then(|a| apis.get(a)) else {
        return Ok(None);
    };
    let named = props
        .get("Auth")
        .and_then(|a| a.get("Authorizer"))
        .and_then(Value::as_str);
    let name = match named {
        Some("NONE") => return Ok(None),
        Some(n) => n.to_string(),
        None => match default {
            Some(d) => d.clone(),
            None => return Ok(None),
        },
    };
    list.iter()
        .find(|a| a.name == name)
        .cloned()
        .map(Some)
        .with_context(|| format!("{logical_id}: unknown authorizer {name}"))
}

#[cfg(test)]
mod tests {
    use crate::template::{EMBEDDED, Trigger, parse};
    use std::time::Duration;

    #[test]
    fn protected_routes_carry_the_session_authorizer_and_public_ones_none() {
        let specs = parse(EMBEDDED).expect("parses");
        let route = |m: &str, p: &str| {
            specs
                .iter()
                .flat_map(|s| &s.triggers)
                .find_map(|t| match t {
                    Trigger::Http {
                        method,
                        path,
                        authorizer,
                    } if method == m && path == p => Some(authorizer.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("route {m} {p}"))
        };
        let auth = route("POST", "/orders").expect("POST /orders is protected");
        assert_eq!(auth.binary, "identity-authorize");
        assert_eq!(auth.header, "authorization");
        assert!(auth.ttl > Duration::ZERO);
        assert!(route("GET", "/orders/{id}").is_some());
        assert!(route("DELETE", "/sessions/current").is_some());
        for (m, p) in [
            ("POST", "/users"),
            ("POST", "/sessions"),
            ("GET", "/products"),
        ] {
            assert_eq!(route(m, p), None, "{m} {p} is public");
        }
    }

    #[test]
    fn an_unknown_authorizer_is_an_error_naming_the_function() {
        let text = EMBEDDED.replacen("  Authorizer: NONE", "  Authorizer: Nobody", 1);
        let err = parse(&text).expect_err("unknown authorizer");
        assert!(
            err.to_string().contains("unknown authorizer Nobody"),
            "{err}"
        );
    }
}
