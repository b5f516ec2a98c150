//! The HTTP front door: what API Gateway's HTTP API does in the cloud. Each request is
//! matched to a route of template.yaml, turned into a payload-v2 event (with the TCP peer
//! as `requestContext.http.sourceIp`, as API Gateway sets it), handed to the route's
//! function, and its answer turned back into an HTTP response.
//!
//! Like API Gateway it protects the functions from slow and oversized clients: headers
//! must arrive within a timeout (a slowloris client is disconnected, and so is an idle
//! keep-alive connection), a body within another (408), and no body may exceed a size (413).
//! That is why it serves connections with hyper directly: `axum::serve` sets no timer, so
//! hyper's header read timeout would never fire.
//!
//! Protected routes pass the HTTP API's Lambda authorizer first, called as API Gateway
//! calls it (`Gate`): no identity header is 401 `{"message":"Unauthorized"}` without a call,
//! a denial is 403 `{"message":"Forbidden"}`, a failing authorizer 500, and an answer is
//! cached per header value for the authorizer's `ReauthorizeEvery`.

use crate::invoke::Target;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

#[derive(Clone)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: String,
    pub target: Target,
    /// The Lambda authorizer in front of this route; `None` for a public route.
    pub authorizer: Option<Arc<Gate>>,
}

/// A Lambda authorizer (REQUEST, payload 2.0, simple responses) with API Gateway's cache.
pub struct Gate {
    pub spec: crate::template::Authorizer,
    pub target: Target,
    cache: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Value)>>,
}

/// Most cached answers kept; past it the cache starts over (it is only a cache).
const GATE_CACHE_ENTRIES: usize = 10_000;

impl Gate {
    pub fn new(spec: crate::template::Authorizer, target: Target) -> Self {
        Gate {
            spec,
            target,
            cache: Default::default(),
        }
    }

    fn cached(&self, identity: &str) -> Option<Value> {
        let cache = self.cache.lock().ok()?;
        let (at, answer) = cache.get(identity)?;
        (at.elapsed() < self.spec.ttl).then(|| answer.clone())
    }

    fn remember(&self, identity: &str, answer: &Value) {
        if self.spec.ttl.is_zero() {
            return;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= GATE_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(
                identity.to_string(),
                (std::time::Instant::now(), answer.clone()),
            );
        }
    }

    /// What API Gateway does before the route: `Ok(context)` to pass it on to the route's
    /// event as `requestContext.authorizer.lambda`, or the answer the client gets.
    pub async fn check(&self, event: &Value) -> Result<Value, Response> {
        let identity = event["headers"][self.spec.header.as_str()]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        let Some(identity) = identity else {
            return Err(gateway_message(StatusCode::UNAUTHORIZED, "Unauthorized"));
        };
        let answer = match self.cached(&identity) {
            Some(answer) => answer,
            None => {
                let mut auth_event = event.clone();
                if let Some(obj) = auth_event.as_object_mut() {
                    obj.remove("body");
                    obj.remove("isBase64Encoded");
                    obj.insert("type".into(), json!("REQUEST"));
                    obj.insert("identitySource".into(), json!([identity]));
                    let route_key = obj
                        .get("routeKey")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .replacen(' ', "/", 1);
                    obj.insert(
                        "routeArn".into(),
                        json!(format!(
                            "arn:aws:execute-api:local:000000000000:local/$default/{route_key}"
                        )),
                    );
                }
                match self.target.invoke(auth_event).await {
                    Ok(answer) => {
                        self.remember(&identity, &answer);
                        answer
                    }
                    Err(e) => {
                        tracing::error!(authorizer = %self.spec.binary, error = %e, "authorizer failed");
                        return Err(gateway_message(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Internal Server Error",
                        ));
                    }
                }
            }
        };
        if answer.get("isAuthorized").and_then(Value::as_bool) == Some(true) {
            Ok(answer.get("context").cloned().unwrap_or_else(|| json!({})))
        } else {
            Err(gateway_message(StatusCode::FORBIDDEN, "Forbidden"))
        }
    }
}

/// API Gateway's own answers (`{"message": ...}`), not a function's.
fn gateway_message(status: StatusCode, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(json!({ "message": message }).to_string()))
        .unwrap_or_default()
}

pub struct Front {
    pub routes: Vec<Route>,
    pub limits: Limits,
    /// `ORDERFLOW_CORS_ORIGINS` (off when empty).
    pub cors: crate::cors::Cors,
}

/// What the front door tolerates from a client (README, "Security").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time for a request's headers to arrive (also how long an idle keep-alive
    /// connection is kept): `ORDERFLOW_HTTP_HEADER_TIMEOUT_MS`.
    pub header_read_timeout: Duration,
    /// Time for a request's whole body to arrive: `ORDERFLOW_HTTP_BODY_TIMEOUT_MS`.
    pub body_read_timeout: Duration,
    /// Largest body accepted: `ORDERFLOW_HTTP_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            // The largest valid request (100 order lines, a 1024-character password) is a
            // few KiB; 64 KiB leaves room without letting a client make us buffer megabytes.
            max_body_bytes: 64 * 1024,
        }
    }
}

pub fn router(front: Arc<Front>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(front)
}

/// Matches `/orders/{id}` against `/orders/42`, returning the path parameters.
pub fn match_path(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (ts, ps) in t.iter().zip(&p) {
        if let Some(name) = ts.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if ps.is_empty() {
                return None;
            }
            params.insert(name.to_string(), percent_decode(ps));
        } else if ts != ps {
            return None;
        }
    }
    Some(params)
}

fn percent_decode(s: &str) -> String {
    url_decode(s, false)
}

fn url_decode(s: &str, plus_is_space: bool) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(if b == b'+' && plus_is_space { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// An error after which the rest of the request cannot be trusted to be read: the
/// connection closes once the answer is sent.
fn error_closing(status: StatusCode, code: &str, message: &str) -> Response {
    let mut resp = error(status, code, message);
    resp.headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    resp
}

/// The whole body, within the size and time limits: 413 over the size (at once when
/// `Content-Length` says so), 408 when it does not arrive in time.
async fn read_body(headers: &HeaderMap, body: Body, limits: &Limits) -> Result<Bytes, Response> {
    let too_large = || {
        error_closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the body must be at most {} bytes", limits.max_body_bytes),
        )
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                error_closing(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the body could not be read",
                )
            })?;
            if buf.len() + chunk.len() > limits.max_body_bytes {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(limits.body_read_timeout, read).await {
        Ok(Ok(())) => Ok(Bytes::from(buf)),
        Ok(Err(resp)) => Err(resp),
        Err(_) => Err(error_closing(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the body did not arrive in time",
        )),
    }
}

async fn handle(State(front): State<Arc<Front>>, req: axum::extract::Request) -> Response {
    if let Some(preflight) = front.cors.preflight(req.method(), req.headers()) {
        return preflight;
    }
    // Only the Origin header is kept for the answer, and only when CORS is on.
    let origin = front
        .cors
        .enabled()
        .then(|| req.headers().get("origin").cloned());
    let mut resp = route(&front, req).await;
    if let Some(origin) = origin {
        front
            .cors
            .decorate(origin.as_ref().and_then(|o| o.to_str().ok()), &mut resp);
    }
    resp
}

async fn route(front: &Front, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let (method, uri, headers) = (&parts.method, &parts.uri, &parts.headers);
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    let path = uri.path();
    if path == "/health" {
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(r#"{"status":"ok"}"#))
            .unwrap_or_default();
    }
    let mut path_matched = false;
    let found = front.routes.iter().find_map(|r| {
        let params = match_path(&r.path, path)?;
        path_matched = true;
        (r.method == method.as_str() || r.method == "ANY").then_some((r, params))
    });
    let Some((route, params)) = found else {
        return if path_matched {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path",
            )
        } else {
            error(StatusCode::NOT_FOUND, "not_found", "no such route")
        };
    };
    let mut event = v2_event(route, method, uri, headers, &[], params);
    if let Some(ip) = peer {
        event["requestContext"]["http"]["sourceIp"] = Value::String(ip.to_string());
    }
    // The authorizer runs first, as on API Gateway: a caller without a session costs no
    // body buffering either.
    if let Some(gate) = &route.authorizer {
        match gate.check(&event).await {
            Ok(context) => event["requestContext"]["authorizer"] = json!({ "lambda": context }),
            Err(resp) => {
                shared::metrics::HTTP_REQUESTS.inc(&[&route.function, resp.status().as_str()]);
                return resp;
            }
        }
    }
    // Only a routed request's body is read: an unknown path costs no buffering.
    let body = match read_body(headers, body, &front.limits).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    set_body(&mut event, &body);
    // The function's own log lines (in-process) carry the route and request id; handlers
    // that know an order add its id in a span of their own.
    let span = tracing::info_span!(
        "http",
        function = %route.function,
        route = %event["routeKey"].as_str().unwrap_or_default(),
        request_id = %event["requestContext"]["requestId"].as_str().unwrap_or_default(),
    );
    let started = std::time::Instant::now();
    let answer = route.target.invoke(event).instrument(span).await;
    let answer_ok = answer.is_ok();
    let response = match answer {
        Ok(v) => v2_response(&v),
        Err(e) => {
            tracing::error!(function = %route.function, error = %e, "HTTP function failed");
            error(
                StatusCode::BAD_GATEWAY,
                "function_error",
                "the function failed to answer",
            )
        }
    };
    // As API Gateway counts: the status the client got, 502 when the function failed.
    let function = route.function.as_str();
    let outcome = if answer_ok { "ok" } else { "failed" };
    shared::metrics::INVOCATIONS.inc(&[function, outcome]);
    shared::metrics::HTTP_REQUESTS.inc(&[function, response.status().as_str()]);
    shared::metrics::HTTP_DURATION.observe(&[function], started.elapsed().as_secs_f64());
    response
}

/// The API Gateway HTTP API payload v2 event, as AWS builds it.
pub fn v2_event(
    route: &Route,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    params: BTreeMap<String, String>,
) -> Value {
    let route_key = format!("{} {}", route.method, route.path);
    let mut hdrs: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        hdrs.entry(name.as_str().to_string())
            .and_modify(|e| *e = format!("{e},{v}"))
            .or_insert(v);
    }
    let raw_query = uri.query().unwrap_or("");
    let mut query: Map<String, Value> = Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (url_decode(k, true), url_decode(v, true));
        match query.get_mut(&k) {
            // v2 joins repeated parameters with commas.
            Some(Value::String(existing)) => *existing = format!("{existing},{v}"),
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    let now = chrono::Utc::now();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": raw_query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": hdrs.get("host").cloned().unwrap_or_else(|| "localhost".into()),
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "userAgent": hdrs.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !params.is_empty() {
        event["pathParameters"] = json!(params);
    }
    set_body(&mut event, body);
    event
}

/// The body as API Gateway puts it in a v2 event: text, or base64 when not UTF-8.
fn set_body(event: &mut Value, body: &[u8]) {
    if body.is_empty() {
        return;
    }
    match std::str::from_utf8(body) {
        Ok(text) => event["body"] = Value::String(text.to_string()),
        Err(_) => {
            event["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(body));
            event["isBase64Encoded"] = Value::Bool(true);
        }
    }
}

/// A function's v2 answer as an HTTP response.
pub fn v2_response(v: &Value) -> Response {
    let status = v
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok());
    let Some(status) = status else {
        return error(
            StatusCode::BAD_GATEWAY,
            "function_error",
            "the function answered without a statusCode",
        );
    };
    let mut builder = Response::builder().status(status);
    if let Some(h) = v.get("headers").and_then(Value::as_object) {
        for (k, val) in h {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(k.as_str()),
                val.as_str().map(HeaderValue::from_str),
            ) {
                builder = builder.header(name, value);
            }
        }
    }
    let body = match v.get("body").and_then(Value::as_str) {
        None => Vec::new(),
        Some(b) if v.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) => {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default()
        }
        Some(b) => b.as_bytes().to_vec(),
    };
    builder.body(Body::from(body)).unwrap_or_default()
}

pub async fn serve(
    addr: SocketAddr,
    front: Arc<Front>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (ORDERFLOW_HTTP_ADDR): {e}"))?;
    let local = listener.local_addr()?;
    let header_timeout = front.limits.header_read_timeout;
    let app = router(front);
    let handle = tokio::spawn(serve_connections(listener, app, header_timeout, shutdown));
    Ok((local, handle))
}

/// `/metrics` (Prometheus text) on an address of its own (`ORDERFLOW_METRICS_ADDR`), so the
/// API port never exposes operational data and a scraper needs no route through the API.
pub async fn serve_metrics(
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (ORDERFLOW_METRICS_ADDR): {e}"))?;
    let local = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Body::from(shared::metrics::render()))
                .unwrap_or_default()
        }),
    );
    let handle = tokio::spawn(serve_connections(
        listener,
        app,
        Limits::default().header_read_timeout,
        shutdown,
    ));
    Ok((local, handle))
}

/// Accepts connections until `shutdown`, each served by hyper with a header read timeout
/// and the peer's address as `ConnectInfo`; then lets in-flight requests finish.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let tower = hyper_util::service::TowerToHyperService::new(app.clone());
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                hyper::service::Service::call(&tower, req)
            });
        let mut stop = shutdown.clone();
        // A client that hangs up mid-request ends this connection's future (hyper notices
        // the EOF while the handler runs), which drops the handler's future: work it queued,
        // such as a password hash, is then skipped (identity's `HashingPool`).
        conns.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    done = conn.as_mut() => {
                        if let Err(e) = done {
                            tracing::debug!(error = %e, %peer, "connection closed");
                        }
                        break;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    while conns.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates_capture_parameters() {
        assert_eq!(
            match_path("/orders/{id}", "/orders/42")
                .and_then(|p| p.get("id").cloned())
                .as_deref(),
            Some("42")
        );
        assert!(match_path("/orders/{id}", "/orders").is_none());
        assert!(
            match_path("/products/{id}/stock", "/products/a%20b/stock")
                .is_some_and(|p| p["id"] == "a b")
        );
        assert!(match_path("/stock", "/stocks").is_none());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_and_one_that_never_ends_is_408() {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_millis(100),
            max_body_bytes: 8,
        };
        let none = HeaderMap::new();
        let ok = read_body(&none, Body::from("12345678"), &limits).await;
        assert_eq!(ok.ok().as_deref(), Some(&b"12345678"[..]));
        let over = read_body(&none, Body::from("123456789"), &limits)
            .await
            .expect_err("over the limit");
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(over.headers()["connection"], "close");
        // Refused on the declared length alone: the body is never polled.
        let mut declared = HeaderMap::new();
        declared.insert("content-length", HeaderValue::from_static("9"));
        let never = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let started = std::time::Instant::now();
        let r = read_body(&declared, never, &limits)
            .await
            .expect_err("declared too large");
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(started.elapsed() < Duration::from_millis(100));
        let never = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let slow = read_body(&none, never, &limits)
            .await
            .expect_err("never ends");
        assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(slow.headers()["connection"], "close");
    }

    /// An authorizer that allows the token `good`, fails on `boom`, and counts its calls.
    struct StubAuthorizer(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl shared::Function for StubAuthorizer {
        async fn invoke(&self, event: Value) -> Result<Value, shared::lambda::FunctionError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert_eq!(event["type"], "REQUEST");
            assert!(event.get("body").is_none(), "an authorizer gets no body");
            match event["identitySource"][0].as_str() {
                Some("Bearer good") => {
                    Ok(json!({"isAuthorized": true, "context": {"user_id": "u1"}}))
                }
                Some("Bearer boom") => Err("redis down".into()),
                _ => Ok(json!({"isAuthorized": false})),
            }
        }
    }

    #[tokio::test]
    async fn the_gate_answers_as_api_gateway_does_and_caches_per_header_value() {
        let stub = Arc::new(StubAuthorizer(Default::default()));
        let gate = Gate::new(
            crate::template::Authorizer {
                name: "SessionAuthorizer".into(),
                binary: "identity-authorize".into(),
                header: "authorization".into(),
                ttl: Duration::from_secs(60),
            },
            Target::InProcess(stub.clone()),
        );
        let calls = || stub.0.load(std::sync::atomic::Ordering::SeqCst);
        let event = |auth: Option<&str>| {
            let mut e = json!({"routeKey": "POST /orders", "headers": {}, "body": "{}"});
            if let Some(a) = auth {
                e["headers"]["authorization"] = json!(a);
            }
            e
        };
        let status = |r: Result<Value, Response>| r.err().map(|r| r.status().as_u16());

        assert_eq!(status(gate.check(&event(None)).await), Some(401));
        assert_eq!(calls(), 0, "no header, no call");
        assert_eq!(
            status(gate.check(&event(Some("Bearer bad"))).await),
            Some(403)
        );
        assert_eq!(
            status(gate.check(&event(Some("Bearer boom"))).await),
            Some(500)
        );
        let ctx = gate.check(&event(Some("Bearer good"))).await.ok();
        assert_eq!(ctx, Some(json!({"user_id": "u1"})));
        let before = calls();
        assert!(gate.check(&event(Some("Bearer good"))).await.is_ok());
        assert_eq!(
            status(gate.check(&event(Some("Bearer bad"))).await),
            Some(403)
        );
        assert_eq!(calls(), before, "answers come from the cache");
        assert_eq!(
            status(gate.check(&event(Some("Bearer boom"))).await),
            Some(500)
        );
        assert_eq!(calls(), before + 1, "a failure is never cached");
    }

    #[test]
    fn query_strings_decode_like_api_gateway() {
        assert_eq!(url_decode("a%2Cb+c", true), "a,b c");
        assert_eq!(url_decode("100%", true), "100%");
    }
}
