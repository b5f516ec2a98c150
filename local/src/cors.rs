//! CORS at the front door, as API Gateway's HTTP API does it with a `CorsConfiguration`
//! (template.yaml's `CorsAllowOrigins`): a preflight `OPTIONS` is answered by the door
//! itself, before any route or authorizer, and every answer to an allowed origin, errors
//! included, carries `Access-Control-Allow-Origin`. Origins come from
//! `ORDERFLOW_CORS_ORIGINS` (comma-separated, or `*`); unset, CORS is off and a browser on
//! another origin cannot read any answer.
//!
//! No credentials mode: the API authenticates by a bearer token the page holds, not by
//! cookies, so `*` exposes nothing a page could not already send.

use axum::http::{HeaderMap, HeaderValue, Method, Response};

/// What a browser may send and read, the same lists as template.yaml's CorsConfiguration.
pub const ALLOW_METHODS: &str = "GET, POST, PATCH, DELETE, OPTIONS";
pub const ALLOW_HEADERS: &str =
    "authorization, content-type, idempotency-key, if-match, traceparent";
pub const EXPOSE_HEADERS: &str = "etag, retry-after, location";
/// How long a browser may cache a preflight answer (seconds).
pub const MAX_AGE: &str = "600";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    origins: Vec<String>,
    any: bool,
}

impl Cors {
    /// From `ORDERFLOW_CORS_ORIGINS`: `https://shop.example, http://localhost:5173` or `*`.
    /// An origin is a scheme, host and optional port, nothing more.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut cors = Cors::default();
        for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if origin == "*" {
                cors.any = true;
                continue;
            }
            let url = url::Url::parse(origin)
                .map_err(|e| format!("ORDERFLOW_CORS_ORIGINS: {origin:?} is no origin: {e}"))?;
            let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
                return Err(format!(
                    "ORDERFLOW_CORS_ORIGINS: {origin:?} must be scheme://host[:port] with nothing after it"
                ));
            }
            cors.origins.push(url.origin().ascii_serialization());
        }
        Ok(cors)
    }

    pub fn from_env() -> Result<Self, String> {
        match std::env::var("ORDERFLOW_CORS_ORIGINS") {
            Ok(raw) => Self::parse(&raw),
            Err(_) => Ok(Self::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.any || !self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    fn allow(&self, origin: &str) -> Option<&str> {
        if self.any {
            Some("*")
        } else {
            self.origins
                .iter()
                .find(|o| o.eq_ignore_ascii_case(origin))
                .map(String::as_str)
        }
    }

    /// A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) when CORS
    /// is on: 204, with the allowance when the origin is allowed and without it otherwise
    /// (the browser then refuses, as it does behind API Gateway).
    pub fn preflight<B: Default>(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Response<B>> {
        if !self.enabled()
            || method != Method::OPTIONS
            || !headers.contains_key("access-control-request-method")
        {
            return None;
        }
        let origin = headers.get("origin")?.to_str().ok()?;
        let mut resp = Response::new(B::default());
        *resp.status_mut() = axum::http::StatusCode::NO_CONTENT;
        if let Some(allowed) = self.allow(origin) {
            let h = resp.headers_mut();
            set(h, "access-control-allow-origin", allowed);
            set(h, "access-control-allow-methods", ALLOW_METHODS);
            set(h, "access-control-allow-headers", ALLOW_HEADERS);
            set(h, "access-control-max-age", MAX_AGE);
        }
        set(resp.headers_mut(), "vary", "Origin");
        Some(resp)
    }

    /// Adds the allowance to an answer for a request from an allowed origin (the request's
    /// `Origin` header, if it had one).
    pub fn decorate<B>(&self, origin: Option<&str>, resp: &mut Response<B>) {
        if !self.enabled() {
            return;
        }
        let h = resp.headers_mut();
        // Caches must not hand one origin's answer to another.
        h.append("vary", HeaderValue::from_static("Origin"));
        let Some(origin) = origin else {
            return;
        };
        if let Some(allowed) = self.allow(origin) {
            set(h, "access-control-allow-origin", allowed);
            set(h, "access-control-expose-headers", EXPOSE_HEADERS);
        }
    }
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn origins_must_be_bare_origins() {
        let cors = Cors::parse(" https://shop.example , http://localhost:5173 ").expect("ok");
        assert!(cors.enabled());
        assert_eq!(
            cors.allow("https://shop.example"),
            Some("https://shop.example")
        );
        assert_eq!(
            cors.allow("http://localhost:5173"),
            Some("http://localhost:5173")
        );
        assert_eq!(cors.allow("https://evil.example"), None);
        assert_eq!(cors.allow("http://localhost:5174"), None);
        assert!(!Cors::parse("").expect("empty").enabled());
        for bad in [
            "shop.example",
            "https://shop.example/path",
            "ftp://x.example",
            "https://x.example?q=1",
        ] {
            assert!(Cors::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Cors::parse("*")
                .expect("any")
                .allow("https://anyone.example"),
            Some("*")
        );
    }

    #[test]
    fn a_preflight_is_answered_only_when_on_and_grants_only_allowed_origins() {
        let cors = Cors::parse("https://shop.example").expect("ok");
        let ask = |origin: &str| {
            headers(&[
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ])
        };
        let ok: Response<String> = cors
            .preflight(&Method::OPTIONS, &ask("https://shop.example"))
            .expect("preflight");
        assert_eq!(ok.status(), 204);
        assert_eq!(
            ok.headers()["access-control-allow-origin"],
            "https://shop.example"
        );
        assert!(
            ok.headers()["access-control-allow-headers"]
                .to_str()
                .expect("ascii")
                .contains("idempotency-key")
        );
        let refused: Response<String> = cors
            .preflight(&Method::OPTIONS, &ask("https://evil.example"))
            .expect("answered");
        assert!(
            !refused
                .headers()
                .contains_key("access-control-allow-origin")
        );
        // A plain OPTIONS, or CORS off, is no preflight: it is routed like any request.
        assert!(
            cors.preflight::<String>(
                &Method::OPTIONS,
                &headers(&[("origin", "https://shop.example")])
            )
            .is_none()
        );
        assert!(
            Cors::default()
                .preflight::<String>(&Method::OPTIONS, &ask("https://shop.example"))
                .is_none()
        );
    }

    #[test]
    fn answers_to_allowed_origins_carry_the_allowance_and_others_do_not() {
        let cors = Cors::parse("https://shop.example").expect("ok");
        let mut resp = Response::new(String::new());
        cors.decorate(Some("https://shop.example"), &mut resp);
        assert_eq!(
            resp.headers()["access-control-allow-origin"],
            "https://shop.example"
        );
        assert!(
            resp.headers()["access-control-expose-headers"]
                .to_str()
                .expect("ascii")
                .contains("retry-after")
        );
        let mut resp = Response::new(String::new());
        cors.decorate(Some("https://evil.example"), &mut resp);
        assert!(!resp.headers().contains_key("access-control-allow-origin"));
        assert_eq!(resp.headers()["vary"], "Origin");
        let mut resp = Response::new(String::new());
        Cors::default().decorate(Some("https://shop.example"), &mut resp);
        assert!(resp.headers().is_empty(), "CORS off adds nothing");
    }
}
