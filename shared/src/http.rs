//! API Gateway HTTP API (payload v2) helpers: JSON bodies in and out, the error shape
//! `{"error":{"code","message"}}`, bearer tokens, path parameters.

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
    /// Seconds for a `Retry-After` header (429, 503 refusals).
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
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
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

/// Turns a handler result into the response API Gateway expects.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
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

/// Parses the JSON body, answering 400 with serde's description of what is wrong.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("a JSON body is required"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn bearer(req: &Request) -> Option<&str> {
    let value = header(req, "authorization")?;
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
