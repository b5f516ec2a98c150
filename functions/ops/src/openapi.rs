//! `ops-openapi` (HTTP `GET /openapi.json`): the API's OpenAPI 3.1 description, from the
//! repository's `openapi.yaml`, compiled in so the document a stack serves is the one its
//! functions were built with.

use shared::Function;
use shared::context::Context;
use shared::http::{ApiError, Response, json_response};
use std::sync::{Arc, LazyLock};

pub const ROUTE: &str = "GET /openapi.json";

/// The document as written (YAML, for people and for tests).
pub const YAML: &str = include_str!("../../../openapi.yaml");

/// The document as JSON; `None` if the YAML did not parse (a unit test makes sure it does).
static JSON: LazyLock<Option<serde_json::Value>> = LazyLock::new(|| parse().ok());

pub fn parse() -> Result<serde_json::Value, serde_yaml::Error> {
    serde_yaml::from_str(YAML)
}

pub fn openapi(_ctx: &Context) -> Arc<dyn Function> {
    Arc::new(shared::lambda::HttpFunction(
        |req: shared::http::Request| async move {
            if req.route_key.as_deref() != Some(ROUTE) {
                return Err(ApiError::not_found("route"));
            }
            let doc = JSON.as_ref().ok_or_else(ApiError::internal)?;
            let mut resp: Response = json_response(200, doc);
            // The document changes only with a deploy.
            resp.headers.insert(
                "cache-control",
                aws_lambda_events::http::HeaderValue::from_static("public, max-age=300"),
            );
            Ok(resp)
        },
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses_and_is_openapi_3_1() {
        let doc = super::parse().expect("openapi.yaml is YAML");
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/orders"]["get"].is_object());
    }
}
