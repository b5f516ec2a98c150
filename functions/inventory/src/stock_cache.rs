//! `RedisStockCache`: `stock:<product_id>` -> `"version:available"` with a TTL.
//!
//! Writes go through a Lua script that only sets when the stored version is older or
//! absent, so a slow writer (a read-through that raced a reservation, an out-of-order
//! after-commit) can never move the cache backwards past a newer figure. Reads and writes
//! for many products are one pipelined round trip each.

use crate::domain::StockFigure;
use redis::RedisResult;
use shared::cache::Redis;
use shared::topology::Names;
use std::time::Duration;

/// KEYS[1] = key, ARGV = version, available, ttl in ms. Returns 1 when written.
const SET_IF_NEWER: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^(-?%d+):'))
  if v and v >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
";

#[derive(Clone)]
pub struct RedisStockCache {
    redis: Redis,
    names: Names,
    ttl: Duration,
}

impl RedisStockCache {
    pub fn new(redis: Redis, names: Names, ttl: Duration) -> Self {
        RedisStockCache { redis, names, ttl }
    }

    pub fn from_context(ctx: &shared::context::Context) -> Self {
        Self::new(
            ctx.redis.clone(),
            ctx.names.clone(),
            ctx.config.stock_cache_ttl,
        )
    }

    pub fn key(&self, product_id: &str) -> String {
        self.names.redis_key(&format!("stock:{product_id}"))
    }

    /// The cached figure of each id, in order (`None` on a miss or an unreadable value).
    pub async fn get_many(&self, ids: &[String]) -> RedisResult<Vec<Option<StockFigure>>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.get(self.key(id));
        }
        let mut conn = self.redis.conn().await?;
        let values: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(values
            .into_iter()
            .map(|v| v.as_deref().and_then(StockFigure::decode))
            .collect())
    }

    /// `get_many` for the read-through path of the API, counting hits and misses (and a
    /// Redis failure as one error per id) in `orderflow_stock_cache_lookups_total`. Checks
    /// such as `orderflow verify` read with `get_many`, so they do not skew the hit rate.
    pub async fn lookup(&self, ids: &[String]) -> RedisResult<Vec<Option<StockFigure>>> {
        use shared::metrics::STOCK_CACHE;
        let found = self.get_many(ids).await;
        match &found {
            Ok(figures) => {
                let hits = figures.iter().filter(|f| f.is_some()).count();
                STOCK_CACHE.add(&["hit"], hits as f64);
                STOCK_CACHE.add(&["miss"], (figures.len() - hits) as f64);
            }
            Err(_) => STOCK_CACHE.add(&["error"], ids.len() as f64),
        }
        found
    }

    /// Writes every figure that is newer than what is cached, with the TTL.
    pub async fn put_many(&self, figures: &[(String, StockFigure)]) -> RedisResult<()> {
        if figures.is_empty() {
            return Ok(());
        }
        let ttl_ms = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut pipe = redis::pipe();
        for (id, figure) in figures {
            pipe.cmd("EVAL")
                .arg(SET_IF_NEWER)
                .arg(1)
                .arg(self.key(id))
                .arg(figure.version)
                .arg(figure.available)
                .arg(ttl_ms)
                .ignore();
        }
        let mut conn = self.redis.conn().await?;
        pipe.query_async::<()>(&mut conn).await
    }

    /// Like `put_many`, but a Redis failure is only logged: the state it mirrors is
    /// committed, and a stale entry dies with its TTL.
    pub async fn refresh(&self, figures: &[(String, StockFigure)]) {
        if let Err(e) = self.put_many(figures).await {
            tracing::warn!(error = %e, count = figures.len(), "could not refresh the stock cache; entries expire with their TTL");
        }
    }
}
