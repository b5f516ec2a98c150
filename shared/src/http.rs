//! API Gateway HTTP API (payload v2) helpers: JSON bodies in and out, the error shape
//! `{"error":{"code","message"}}`, bearer tokens, path parameters, the client's address.
//!
//! Outside input is refused here with a 4xx before any handler sees it: a body that is not
//! JSON, or whose strings hold control characters (NUL included, which Postgres would
//! refuse as a 500). A 5xx means a dependency failed, never that the input was bad.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub type Request = ApiGatewayV2httpRequest;
pub type Response = ApiGatewayV2httpResponse;

/// An error answer; never carries internals (those go to the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429, and 503 when waiting helps).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    /// 429 `rate_limited` with `Retry-After: secs`.
    pub fn rate_limited(secs: u64) -> Self {
        Self::new(
            429,
            "rate_limited",
            format!("too many requests, retry after {secs} s"),
        )
        .with_retry_after(secs)
    }
    /// 503 `busy`: this instance is at capacity (not a broken dependency); retry shortly.
    pub fn busy(what: &str) -> Self {
        Self::new(503, "busy", format!("{what} is at capacity, retry shortly")).with_retry_after(1)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "unauthorized",
            "a valid session token is required (Authorization: Bearer <token>)",
        )
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(404, "not_found", format!("{what} not found"))
    }
    pub fn unavailable(dependency: &str) -> Self {
        Self::new(
            503,
            "dependency_unavailable",
            format!("{dependency} is unavailable, try again"),
        )
    }
    pub fn internal() -> Self {
        Self::new(500, "internal", "internal error")
    }

    pub fn into_response(self) -> Response {
        let mut resp = json_response(
            self.status,
            &serde_json::json!({"error": {"code": self.code, "message": self.message}}),
        );
        if let Some(secs) = self.retry_after {
            resp.headers.insert(
                aws_lambda_events::http::header::RETRY_AFTER,
                aws_lambda_events::http::HeaderValue::from(secs),
            );
        }
        resp
    }

    /// Logs the answer at a level that fits it: a client's mistake (4xx) is not an
    /// incident and must not page anyone; a 5xx is.
    pub fn log(&self) {
        if self.status >= 500 {
            tracing::error!(status = self.status, code = self.code, message = %self.message, "request failed");
        } else {
            tracing::info!(status = self.status, code = self.code, message = %self.message, "request refused");
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // Class 22 (data exception: a NUL byte, a value out of range) is about the input,
        // which the edge checks should have refused: a 400, not an outage.
        let data_exception = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c.starts_with("22"));
        if data_exception {
            tracing::warn!(error = %e, "postgres refused the request's data");
            return ApiError::bad_request("the request holds a value that cannot be stored");
        }
        tracing::error!(error = %e, "postgres error");
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed => ApiError::unavailable("the database"),
            _ => ApiError::internal(),
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        tracing::error!(error = %e, "redis error");
        ApiError::unavailable("the session and cache store")
    }
}

pub fn json_response<T: Serialize>(status: u16, value: &T) -> Response {
    let mut resp = Response::default();
    resp.status_code = i64::from(status);
    resp.headers.insert(
        aws_lambda_events::http::header::CONTENT_TYPE,
        aws_lambda_events::http::HeaderValue::from_static("application/json"),
    );
    resp.body = Some(Body::Text(
        serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
    ));
    resp
}

pub fn empty_response(status: u16) -> Response {
    let mut resp = Response::default();
    resp.status_code = i64::from(status);
    resp
}

/// Turns a handler result into the response API Gateway expects, logging an error answer
/// at the level its status deserves.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        e.log();
        e.into_response()
    })
}

pub fn body_bytes(req: &Request) -> Result<Vec<u8>, ApiError> {
    let body = req.body.as_deref().unwrap_or("");
    if req.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| ApiError::bad_request("body is not valid base64"))
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// Parses the JSON body, answering 400 with serde's description of what is wrong, or
/// naming the field whose string holds a control character.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("a JSON body is required"));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if let Some(at) = control_character_at(&value, "") {
        return Err(ApiError::bad_request(format!(
            "{at} contains a control character (NUL, newline, tab, ...); strings must not"
        )));
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid JSON body: {}",
            without_values(&e.to_string())
        ))
    })
}

/// serde's message without the values it quotes (`invalid type: integer `12345678`,
/// expected a string` names a password sent as a number): error answers are logged, and
/// a value the client sent may be personal data or a secret.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        match (c, quoted) {
            ('`', false) => {
                quoted = true;
                if out.ends_with(' ') {
                    out.pop();
                }
            }
            ('`', true) => quoted = false,
            (_, false) => out.push(c),
            (_, true) => {}
        }
    }
    out
}

/// Where the first string (or key) holding a control character is: `field "email"`,
/// `field "items[0].product_id"`. Raw control characters are already invalid JSON; these
/// come escaped (`\u0000`, `\n`) and would otherwise reach Postgres, logs and e-mails.
pub fn control_character_at(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let bad = |s: &str| s.chars().any(char::is_control);
    let here = || {
        if path.is_empty() {
            "the body".to_string()
        } else {
            format!("field {path:?}")
        }
    };
    match value {
        Value::String(s) => bad(s).then(here),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| control_character_at(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if bad(k) {
                return Some(format!("a key in {}", here()));
            }
            control_character_at(v, &at)
        }),
        _ => None,
    }
}

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The caller's address as the rate limits count it: API Gateway's `sourceIp` (the TCP
/// peer it saw, which a client cannot forge with headers; the local front door sets the
/// same). An IPv6 address counts as its /64, since one host is usually given a whole /64.
/// `None` when the request carries none (a direct invocation).
pub fn client_addr(req: &Request) -> Option<String> {
    let raw = req.request_context.http.source_ip.as_deref()?;
    match raw.parse::<std::net::IpAddr>().ok()?.to_canonical() {
        std::net::IpAddr::V4(v4) => Some(v4.to_string()),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
        }
    }
}

pub fn bearer(req: &Request) -> Option<&str> {
    bearer_token(header(req, "authorization")?)
}

/// The token of an `Authorization` header value `Bearer <token>` (scheme in any case).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

pub fn path_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.path_parameters.get(name).map(String::as_str)
}

pub fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters.first(name)
}

/// The caller's session, or 401; 503 when the session store cannot be asked (never let a
/// request through unauthenticated).
pub async fn authenticate(
    sessions: &crate::session::Sessions,
    req: &Request,
) -> Result<crate::session::Session, ApiError> {
    let token = bearer(req).ok_or_else(ApiError::unauthorized)?;
    sessions
        .validate(token)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// [`authenticate`] for `/admin/*`: 401 without a live session, 403 `forbidden` for anyone
/// but an admin.
pub async fn authenticate_admin(
    sessions: &crate::session::Sessions,
    req: &Request,
) -> Result<crate::session::Session, ApiError> {
    let session = authenticate(sessions, req).await?;
    if session.role != crate::session::Role::Admin {
        return Err(ApiError::new(
            403,
            "forbidden",
            "this route is for admins only",
        ));
    }
    Ok(session)
}

/// The HTTP method of a v2 request.
pub fn method(req: &Request) -> &str {
    req.request_context.http.method.as_str()
}

/// Builds a v2 request; for tests and the local front door.
pub fn request(method: &str, path: &str, route_key: &str) -> Request {
    let mut req = Request::default();
    req.version = Some("2.0".into());
    req.route_key = Some(route_key.to_string());
    req.raw_path = Some(path.to_string());
    req.raw_query_string = Some(String::new());
    req.request_context.route_key = Some(route_key.to_string());
    req.request_context.http.method = method.parse().unwrap_or_default();
    req.request_context.http.path = Some(path.to_string());
    req.request_context.http.protocol = Some("HTTP/1.1".into());
    req.request_context.time_epoch = chrono::Utc::now().timestamp_millis();
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_body(body: &str) -> Request {
        let mut req = request("POST", "/orders", "POST /orders");
        req.body = Some(body.to_string());
        req
    }

    #[test]
    fn a_control_character_anywhere_in_a_body_is_a_400_naming_the_field() {
        for (body, field) in [
            (json!({"email": "a\u{0}b"}), "field \"email\""),
            (
                json!({"items": [{"product_id": "ok"}, {"product_id": "x\ny"}]}),
                "field \"items[1].product_id\"",
            ),
            (json!({"note": "\u{7f}"}), "field \"note\""),
            (json!({"note": "\u{9b}"}), "field \"note\""),
            (json!({"a\u{1}": 1}), "a key in the body"),
            (json!("\t"), "the body"),
        ] {
            let err =
                json_body::<serde_json::Value>(&with_body(&body.to_string())).expect_err("refused");
            assert_eq!(err.status, 400, "{body}");
            assert!(err.message.starts_with(field), "{body}: {}", err.message);
        }
        let ok: serde_json::Value = json_body(&with_body(
            r#"{"email": "élan@example.com", "n": [1, "ünïcode ✓"]}"#,
        ))
        .expect("printable Unicode is fine");
        assert_eq!(ok["n"][1], "ünïcode ✓");
    }

    #[test]
    fn the_client_address_is_the_source_ip_with_ipv6_counted_per_64() {
        let addr = |ip: Option<&str>| {
            let mut req = request("POST", "/sessions", "POST /sessions");
            req.request_context.http.source_ip = ip.map(str::to_string);
            client_addr(&req)
        };
        assert_eq!(addr(Some("203.0.113.7")).as_deref(), Some("203.0.113.7"));
        assert_eq!(
            addr(Some("::ffff:203.0.113.7")).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            addr(Some("2001:db8:1:2:aaaa::1")),
            addr(Some("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(
            addr(Some("2001:db8:1:2::1")).as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_ne!(addr(Some("2001:db8:1:2::1")), addr(Some("2001:db8:1:3::1")));
        assert_eq!(addr(None), None);
        assert_eq!(addr(Some("not an address")), None);
    }

    #[test]
    fn an_error_answer_carries_retry_after_when_it_has_one() {
        let r = ApiError::rate_limited(90).into_response();
        assert_eq!(r.status_code, 429);
        assert_eq!(
            r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("90")
        );
        let r = ApiError::bad_request("x").into_response();
        assert!(r.headers.get("retry-after").is_none());
    }
}

#[cfg(test)]
mod value_free_errors {
    use super::*;

    #[test]
    fn a_wrongly_typed_field_is_refused_without_echoing_its_value() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Creds {
            password: String,
        }
        let mut req = request("POST", "/sessions", "POST /sessions");
        req.body = Some(r#"{"password": 12345678}"#.into());
        let err = json_body::<Creds>(&req).expect_err("refused");
        assert_eq!(err.status, 400);
        assert!(!err.message.contains("12345678"), "{}", err.message);
        assert!(
            err.message
                .contains("invalid type: integer, expected a string"),
            "{}",
            err.message
        );
    }
}
