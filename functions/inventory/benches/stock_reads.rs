//! Stock reads from Redis: N keys one GET at a time (N round trips) against
//! `RedisStockCache::get_many` (one pipelined round trip), for N = 1, 10 and 50.
//!
//! Needs the local Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`). Keys live under a
//! random prefix, are written before and deleted after the run.
//!
//! ```sh
//! cargo bench -p inventory --bench stock_reads -- --measurement-time 3 --warm-up-time 1
//! ```

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use inventory::RedisStockCache;
use inventory::domain::StockFigure;
use shared::cache::Redis;
use shared::topology::Names;
use std::hint::black_box;
use std::time::Duration;

const SIZES: [usize; 3] = [1, 10, 50];

/// The baseline: what a read-through does without a pipeline, one GET and one round trip
/// per id, on the same connection and with the same decoding as `get_many`.
async fn get_one_by_one(
    redis: &Redis,
    cache: &RedisStockCache,
    ids: &[String],
) -> redis::RedisResult<Vec<Option<StockFigure>>> {
    let mut conn = redis.conn().await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let value: Option<String> = redis::cmd("GET")
            .arg(cache.key(id))
            .query_async(&mut conn)
            .await?;
        out.push(value.as_deref().and_then(StockFigure::decode));
    }
    Ok(out)
}

fn stock_reads(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = match Redis::new(&url) {
        Ok(r) => r,
        Err(e) => panic!("{e:#}"),
    };
    let prefix = format!("bench-{}:", uuid::Uuid::new_v4().simple());
    let cache = RedisStockCache::new(
        redis.clone(),
        Names::new(prefix.clone()),
        Duration::from_secs(600),
    );
    let max = SIZES.iter().copied().max().unwrap_or(0);
    let ids: Vec<String> = (0..max).map(|i| format!("sku-bench-{i:03}")).collect();
    let figures: Vec<(String, StockFigure)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let figure = StockFigure {
                version: 1,
                available: 1000 + i as i64,
            };
            (id.clone(), figure)
        })
        .collect();
    if let Err(e) = rt.block_on(cache.put_many(&figures)) {
        panic!("cannot write the bench keys to Redis at {url}: {e} (is Redis running?)");
    }
    // Both paths must read every key back, or the comparison is meaningless.
    for n in SIZES {
        let ids = &ids[..n];
        let piped = rt.block_on(cache.get_many(ids)).ok();
        let seq = rt.block_on(get_one_by_one(&redis, &cache, ids)).ok();
        assert_eq!(piped, seq, "both paths read the same figures");
        assert!(
            piped.is_some_and(|v| v.iter().all(Option::is_some)),
            "every key is found"
        );
    }

    let mut group = c.benchmark_group("stock_reads");
    for n in SIZES {
        let ids = &ids[..n];
        group.bench_with_input(BenchmarkId::new("sequential", n), ids, |b, ids| {
            b.to_async(&rt)
                .iter(|| async { black_box(get_one_by_one(&redis, &cache, ids).await) })
        });
        group.bench_with_input(BenchmarkId::new("pipelined", n), ids, |b, ids| {
            b.to_async(&rt)
                .iter(|| async { black_box(cache.get_many(ids).await) })
        });
    }
    group.finish();

    let cleanup = async {
        let mut conn = redis.conn().await?;
        let keys: Vec<String> = ids.iter().map(|id| cache.key(id)).collect();
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<usize>(&mut conn)
            .await
    };
    match rt.block_on(cleanup) {
        Ok(n) => println!("deleted {n} bench keys under {prefix}"),
        Err(e) => eprintln!("could not delete the bench keys under {prefix}: {e}"),
    }
}

criterion_group!(benches, stock_reads);
criterion_main!(benches);
