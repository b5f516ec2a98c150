//! Sessions in Redis: opaque bearer tokens, stored only as `session:<sha256(token)>` with a
//! sliding TTL. Identity creates and revokes them; every authenticated route checks them.

use crate::cache::Redis;
use crate::topology::Names;
use base64::Engine as _;
use rand::RngCore as _;
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: uuid::Uuid,
    pub email: String,
}

#[derive(Clone)]
pub struct Sessions {
    redis: Redis,
    names: Names,
    ttl: Duration,
}

impl Sessions {
    pub fn new(redis: Redis, names: Names, ttl: Duration) -> Self {
        Sessions { redis, names, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn key(&self, token: &str) -> String {
        let digest = Sha256::digest(token.as_bytes());
        self.names
            .redis_key(&format!("session:{}", hex::encode(digest)))
    }

    /// A new token for `session`, with its expiry time.
    pub async fn create(
        &self,
        session: &Session,
    ) -> redis::RedisResult<(String, chrono::DateTime<chrono::Utc>)> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = format!(
            "ofs_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let value = serde_json::to_string(session).unwrap_or_default();
        let mut conn = self.redis.conn().await?;
        let _: () = conn
            .set_ex(self.key(&token), value, self.ttl.as_secs())
            .await?;
        Ok((token, chrono::Utc::now() + self.ttl))
    }

    /// The session behind `token`, sliding its expiry; `None` when unknown or expired.
    pub async fn validate(&self, token: &str) -> redis::RedisResult<Option<Session>> {
        let mut conn = self.redis.conn().await?;
        let value: Option<String> = conn
            .get_ex(self.key(token), redis::Expiry::EX(self.ttl.as_secs()))
            .await?;
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Kills the token; true when it was alive.
    pub async fn revoke(&self, token: &str) -> redis::RedisResult<bool> {
        let mut conn = self.redis.conn().await?;
        let removed: i64 = conn.del(self.key(token)).await?;
        Ok(removed > 0)
    }
}
