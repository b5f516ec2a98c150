//! A Redis handle for one execution environment: connects on first use (a cold start never
//! fails on Redis), then `ConnectionManager` reconnects by itself; commands time out fast
//! so a Redis outage turns into an error the caller can degrade on, not a hang.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::OnceCell;

#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    url: String,
    manager: std::sync::Arc<OnceCell<ConnectionManager>>,
}

impl Redis {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| {
            anyhow::anyhow!("invalid REDIS_URL {}: {e}", crate::config::redact(url))
        })?;
        Ok(Redis {
            client,
            url: url.to_string(),
            manager: Default::default(),
        })
    }

    pub fn url_redacted(&self) -> String {
        crate::config::redact(&self.url)
    }

    pub async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        self.manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .cloned()
    }
}
