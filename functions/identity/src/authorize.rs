//! `identity-authorize`: the HTTP API's Lambda authorizer (REQUEST type, payload format
//! 2.0, simple responses). API Gateway calls it before any protected route with the
//! `Authorization` header as identity source and caches its answer per header value
//! (`ReauthorizeEvery` in template.yaml); the local front door calls it the same way.
//!
//! It answers `{"isAuthorized": true, "context": {"user_id"}}` for a live session (sliding
//! its idle timeout, as any use does) and `{"isAuthorized": false}` otherwise, which API
//! Gateway turns into 403. No e-mail goes into the context: it would be copied into every
//! request the routes receive. When Redis cannot be asked it fails, so API Gateway answers
//! 500 and caches nothing, instead of caching a denial of a good session.
//!
//! The routes still check the session themselves (`shared::http::authenticate`): within
//! the cache's lifetime a token logged out a moment ago passes this gate, never the route.

use serde_json::{Value, json};
use shared::context::Context;
use shared::lambda::{Function, FunctionError};
use shared::session::Sessions;
use std::sync::Arc;

pub struct Authorize {
    sessions: Sessions,
}

/// The bearer token of an authorizer event: its identity source, else its header.
pub fn token_of(event: &Value) -> Option<&str> {
    let from_source = event
        .get("identitySource")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .and_then(Value::as_str);
    let from_header = || {
        event
            .get("headers")
            .and_then(Value::as_object)?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.as_str())
    };
    shared::http::bearer_token(from_source.or_else(from_header)?)
}

#[async_trait::async_trait]
impl Function for Authorize {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        let Some(token) = token_of(&event) else {
            return Ok(json!({ "isAuthorized": false }));
        };
        match self.sessions.validate(token).await {
            Ok(Some(session)) => Ok(json!({
                "isAuthorized": true,
                "context": {
                    "user_id": session.user_id.to_string(),
                    "role": session.role.as_str(),
                },
            })),
            Ok(None) => Ok(json!({ "isAuthorized": false })),
            Err(e) => {
                tracing::error!(error = %e, "session store unavailable: authorizer fails");
                Err(format!("session store unavailable: {e}").into())
            }
        }
    }
}

/// `identity-authorize`: the HTTP API's authorizer.
pub fn authorize(ctx: &Context) -> Arc<dyn Function> {
    Arc::new(Authorize {
        sessions: ctx.sessions.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_identity_source_or_the_header_with_any_case_of_bearer() {
        assert_eq!(
            token_of(&json!({"identitySource": ["Bearer abc"]})),
            Some("abc")
        );
        assert_eq!(
            token_of(&json!({"headers": {"Authorization": "bearer xyz"}})),
            Some("xyz")
        );
        assert_eq!(token_of(&json!({"identitySource": ["Basic abc"]})), None);
        assert_eq!(token_of(&json!({"identitySource": ["Bearer "]})), None);
        assert_eq!(token_of(&json!({})), None);
        assert_eq!(token_of(&json!("not an object")), None);
    }
}
