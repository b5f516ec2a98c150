//! Sessions in Redis: opaque bearer tokens, stored only as `session:<sha256(token)>` (a hash
//! of the session's JSON, its user and its absolute deadline). Each use slides the expiry by
//! the idle timeout (`SESSION_TTL_SECS`) but never past the absolute lifetime
//! (`SESSION_MAX_LIFETIME_SECS`, from login), so a stolen token that is kept busy still dies.
//! Identity creates and revokes them; every authenticated route checks them.
//!
//! Logging out everywhere: each user has a set `session-user:<user_id>` of the hashes of
//! their sessions, and `revoke_all` deletes them all. Chosen over a per-user generation
//! counter because the sessions really leave Redis (nothing left that a bug in a later
//! check could revive), a lookup stays one key and one script call, and the work falls on
//! the rare logout, not on every request. The set expires with the user's last possible
//! session and is pruned at each login, so it stays as small as the live sessions.
//!
//! Every step is one Lua script on Redis' own clock, so expiry is the same instant for every
//! execution environment. The scripts build the user's keys from the prefix they are given,
//! which needs a Redis that is not a cluster (ElastiCache with cluster mode off, as deployed).

use crate::cache::Redis;
use crate::topology::Names;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: uuid::Uuid,
    pub email: String,
    /// Read from the user's row at login. A session from before roles existed has none and
    /// is a customer's; a grant or revoke logs the user out everywhere, so a session never
    /// carries a role its user no longer has.
    #[serde(default)]
    pub role: Role,
}

/// Who may do what (DESIGN.md section 9): `/admin/*` is for admins only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// ARGV: data, user id, idle ms, lifetime ms, digest, key prefix. Returns the expiry (ms).
const CREATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_at = now + tonumber(ARGV[4])
local expires = math.min(now + tonumber(ARGV[3]), max_at)
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'user', ARGV[2], 'max', max_at)
redis.call('PEXPIREAT', KEYS[1], expires)
for _, d in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[6] .. 'session:' .. d) == 0 then
    redis.call('SREM', KEYS[2], d)
  end
end
redis.call('SADD', KEYS[2], ARGV[5])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return expires
";

/// ARGV: idle ms. Returns {data, expiry ms} or nil. A plain string is a session stored
/// before absolute lifetimes existed: it has no deadline, so it ends here.
const TOUCH: &str = r"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'hash' then
  if kind ~= 'none' then redis.call('DEL', KEYS[1]) end
  return false
end
local v = redis.call('HMGET', KEYS[1], 'data', 'max')
local max_at = tonumber(v[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not v[1] or not max_at or max_at <= now then
  redis.call('DEL', KEYS[1])
  return false
end
local expires = math.min(now + tonumber(ARGV[1]), max_at)
redis.call('PEXPIREAT', KEYS[1], expires)
return {v[1], expires}
";

/// ARGV: digest, key prefix. Returns 1 when the session was alive.
const REVOKE: &str = r"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return 0 end
if kind == 'hash' then
  local user = redis.call('HGET', KEYS[1], 'user')
  if user then redis.call('SREM', ARGV[2] .. 'session-user:' .. user, ARGV[1]) end
end
redis.call('DEL', KEYS[1])
return 1
";

/// KEYS[1]: the user's set; ARGV: key prefix. Returns how many sessions were alive.
const REVOKE_ALL: &str = r"
local n = 0
for _, d in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. 'session:' .. d)
end
redis.call('DEL', KEYS[1])
return n
";

#[derive(Clone)]
pub struct Sessions {
    redis: Redis,
    names: Names,
    ttl: Duration,
    max_lifetime: Duration,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    create: redis::Script,
    touch: redis::Script,
    revoke: redis::Script,
    revoke_all: redis::Script,
}

impl Sessions {
    pub fn new(redis: Redis, names: Names, ttl: Duration, max_lifetime: Duration) -> Self {
        Sessions {
            redis,
            names,
            ttl,
            max_lifetime,
            scripts: std::sync::Arc::new(Scripts {
                create: redis::Script::new(CREATE),
                touch: redis::Script::new(TOUCH),
                revoke: redis::Script::new(REVOKE),
                revoke_all: redis::Script::new(REVOKE_ALL),
            }),
        }
    }

    /// The idle timeout each use slides.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The absolute lifetime from login, which sliding never extends.
    pub fn max_lifetime(&self) -> Duration {
        self.max_lifetime
    }

    fn digest(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    fn key(&self, token: &str) -> String {
        self.names
            .redis_key(&format!("session:{}", Self::digest(token)))
    }

    fn user_key(&self, user_id: uuid::Uuid) -> String {
        self.names.redis_key(&format!("session-user:{user_id}"))
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis().max(1) as u64
    }

    /// A new token for `session`, with its expiry time (the idle timeout or the absolute
    /// lifetime, whichever comes first).
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
        let expires_ms: i64 = self
            .scripts
            .create
            .key(self.key(&token))
            .key(self.user_key(session.user_id))
            .arg(value)
            .arg(session.user_id.to_string())
            .arg(Self::ms(self.ttl))
            .arg(Self::ms(self.max_lifetime))
            .arg(Self::digest(&token))
            .arg(self.names.redis_key(""))
            .invoke_async(&mut conn)
            .await?;
        Ok((token, at(expires_ms)))
    }

    /// The session behind `token`, sliding its expiry; `None` when unknown or expired.
    pub async fn validate(&self, token: &str) -> redis::RedisResult<Option<Session>> {
        Ok(self.validate_until(token).await?.map(|(s, _)| s))
    }

    /// Same, with the session's expiry after this use.
    pub async fn validate_until(
        &self,
        token: &str,
    ) -> redis::RedisResult<Option<(Session, chrono::DateTime<chrono::Utc>)>> {
        let mut conn = self.redis.conn().await?;
        let found: Option<(String, i64)> = self
            .scripts
            .touch
            .key(self.key(token))
            .arg(Self::ms(self.ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(found.and_then(|(v, exp)| Some((serde_json::from_str(&v).ok()?, at(exp)))))
    }

    /// Kills the token; true when it was alive.
    pub async fn revoke(&self, token: &str) -> redis::RedisResult<bool> {
        let mut conn = self.redis.conn().await?;
        let removed: i64 = self
            .scripts
            .revoke
            .key(self.key(token))
            .arg(Self::digest(token))
            .arg(self.names.redis_key(""))
            .invoke_async(&mut conn)
            .await?;
        Ok(removed > 0)
    }

    /// Kills every session of `user_id`; how many were alive.
    pub async fn revoke_all(&self, user_id: uuid::Uuid) -> redis::RedisResult<u64> {
        let mut conn = self.redis.conn().await?;
        self.scripts
            .revoke_all
            .key(self.user_key(user_id))
            .arg(self.names.redis_key(""))
            .invoke_async(&mut conn)
            .await
    }
}

fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now)
}
