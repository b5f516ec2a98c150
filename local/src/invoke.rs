//! Where an invocation goes: the function object in-process, or a Lambda emulator such as
//! `cargo lambda watch` over the Invoke API. Both receive the same event JSON.

use serde_json::Value;
use shared::Function;
use std::sync::Arc;

/// Longest wait for a remote invocation's answer (the template's functions time out at 30 s).
pub const REMOTE_INVOKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

#[derive(Clone)]
pub enum Target {
    InProcess(Arc<dyn Function>),
    Remote {
        client: reqwest::Client,
        url: String,
    },
}

impl Target {
    pub fn remote(base: &str, function: &str) -> Self {
        // An invocation that never answers (an emulator restarting the function under it)
        // must not stall its trigger forever: the batch goes back and is retried instead.
        // Generous, because `cargo lambda watch` may compile a function on its first call.
        let client = reqwest::Client::builder()
            .timeout(REMOTE_INVOKE_TIMEOUT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Target::Remote {
            client,
            url: format!(
                "{}/2015-03-31/functions/{function}/invocations",
                base.trim_end_matches('/')
            ),
        }
    }

    /// The function's answer, or why the invocation failed.
    pub async fn invoke(&self, event: Value) -> Result<Value, String> {
        match self {
            Target::InProcess(f) => f.invoke(event).await.map_err(|e| e.to_string()),
            Target::Remote { client, url } => {
                let resp = client
                    .post(url)
                    .json(&event)
                    .send()
                    .await
                    .map_err(|e| format!("invoke {url}: {e}"))?;
                let failed = !resp.status().is_success()
                    || resp.headers().contains_key("x-amz-function-error");
                let body: Value = resp
                    .json()
                    .await
                    .map_err(|e| format!("invoke {url}: bad answer: {e}"))?;
                if failed || body.get("errorType").is_some() {
                    Err(format!("function error: {body}"))
                } else {
                    Ok(body)
                }
            }
        }
    }
}
