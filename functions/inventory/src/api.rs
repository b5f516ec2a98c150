//! `inventory-products`: the catalog (paginated by an opaque cursor) and stock over HTTP. Availability always comes through
//! the Redis stock cache (read-through from Postgres on a miss); when Redis is down the
//! figures come straight from Postgres. `x-stock-source` says which.

use crate::domain::{self, StockFigure};
use crate::pg::PgStock;
use crate::stock_cache::RedisStockCache;
use serde::Serialize;
use shared::http::{ApiError, Request, Response, json_response, path_param, query_param};
use sqlx::PgPool;
use std::collections::HashMap;

pub const SOURCE_HEADER: &str = "x-stock-source";

/// Where a response's stock figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Every figure was a cache hit.
    Cache,
    /// At least one figure was read from Postgres (a miss, or Redis unavailable).
    Database,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Database => "database",
        }
    }
}

#[derive(Serialize)]
struct ProductView {
    product_id: String,
    name: String,
    price_cents: i64,
    currency: String,
    available: i64,
    discontinued: bool,
    /// The catalog version (the admin routes' ETag).
    version: i64,
}

/// A row of `GET /products`: id, name, price, currency, stock version, available,
/// discontinued, catalog version.
type ListRow = (String, String, i64, String, i64, i32, bool, i64);

#[derive(Serialize)]
struct StockView {
    product_id: String,
    available: i64,
}

pub struct ProductsApi {
    pool: PgPool,
    cache: RedisStockCache,
}

impl ProductsApi {
    pub fn new(pool: PgPool, cache: RedisStockCache) -> Self {
        ProductsApi { pool, cache }
    }

    pub async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        let route = req
            .route_key
            .as_deref()
            .or(req.request_context.route_key.as_deref())
            .unwrap_or("");
        match route {
            "GET /products" => {
                let limit = crate::product::page_limit(query_param(&req, "limit"))
                    .map_err(ApiError::bad_request)?;
                let after = match query_param(&req, "cursor") {
                    None => None,
                    Some(raw) => Some(crate::product::parse_cursor(raw).ok_or_else(|| {
                        ApiError::bad_request("cursor is not one this API gave out")
                    })?),
                };
                self.list(limit, after.as_deref()).await
            }
            "GET /products/{id}/stock" => {
                let id = path_param(&req, "id")
                    .ok_or_else(|| ApiError::bad_request("missing product id"))?;
                if !domain::valid_product_id(id) {
                    return Err(ApiError::bad_request(format!(
                        "invalid product id: {}",
                        shared::product::PRODUCT_ID_RULE
                    )));
                }
                self.one(id).await
            }
            "GET /stock" => {
                // API Gateway v2 joins repeated parameters with commas and aws_lambda_events
                // splits them again, so `ids=a,b` arrives as two values: rejoin them all.
                let raw = req.query_string_parameters.all("ids").map(|v| v.join(","));
                let ids = domain::parse_ids(raw.as_deref()).map_err(ApiError::bad_request)?;
                self.many(ids).await
            }
            other => Err(ApiError::not_found(&format!("route {other:?}"))),
        }
    }

    /// One page in product id order, after the cursor's product (keyset pagination: a
    /// product inserted during a walk is seen once if it sorts after the cursor, else not
    /// at all, and none is skipped or repeated).
    async fn list(&self, limit: i64, after: Option<&str>) -> Result<Response, ApiError> {
        let mut rows: Vec<ListRow> = sqlx::query_as(
            "SELECT product_id, name, price_cents, currency, version, available, discontinued,
                    catalog_version
             FROM inventory.products WHERE $1::text IS NULL OR product_id > $1
             ORDER BY product_id LIMIT $2",
        )
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        let next_cursor = more
            .then(|| rows.last().map(|r| crate::product::cursor_after(&r.0)))
            .flatten();
        let ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let from_db: HashMap<String, StockFigure> = rows
            .iter()
            .map(|r| {
                (
                    r.0.clone(),
                    StockFigure {
                        version: r.4,
                        available: i64::from(r.5),
                    },
                )
            })
            .collect();
        let (figures, source) = self.availability(&ids, Some(from_db)).await?;
        let products: Vec<ProductView> = rows
            .into_iter()
            .map(
                |(product_id, name, price_cents, currency, _, available, discontinued, version)| {
                    ProductView {
                        available: figures
                            .get(&product_id)
                            .map_or(i64::from(available), |f| f.available),
                        product_id,
                        name,
                        price_cents,
                        currency,
                        discontinued,
                        version,
                    }
                },
            )
            .collect();
        Ok(with_source(
            json_response(
                200,
                &serde_json::json!({ "products": products, "next_cursor": next_cursor }),
            ),
            source,
        ))
    }

    async fn one(&self, id: &str) -> Result<Response, ApiError> {
        let ids = vec![id.to_string()];
        let (figures, source) = self.availability(&ids, None).await?;
        let figure = figures
            .get(id)
            .ok_or_else(|| ApiError::not_found(&format!("product {id}")))?;
        let view = StockView {
            product_id: id.to_string(),
            available: figure.available,
        };
        Ok(with_source(json_response(200, &view), source))
    }

    async fn many(&self, ids: Vec<String>) -> Result<Response, ApiError> {
        let (figures, source) = self.availability(&ids, None).await?;
        let unknown: Vec<&str> = ids
            .iter()
            .filter(|id| !figures.contains_key(*id))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::not_found(&format!(
                "products {}",
                unknown.join(",")
            )));
        }
        let stock: Vec<StockView> = ids
            .iter()
            .filter_map(|id| {
                figures.get(id).map(|f| StockView {
                    product_id: id.clone(),
                    available: f.available,
                })
            })
            .collect();
        Ok(with_source(
            json_response(200, &serde_json::json!({ "stock": stock })),
            source,
        ))
    }

    /// Figures for `ids` through the cache: hits from one pipelined read, misses from
    /// Postgres (or from `from_db` when the caller has just read them) written back. Unknown
    /// products are absent from the map.
    pub async fn availability(
        &self,
        ids: &[String],
        from_db: Option<HashMap<String, StockFigure>>,
    ) -> Result<(HashMap<String, StockFigure>, Source), ApiError> {
        let mut figures = HashMap::new();
        let (misses, redis_up): (Vec<String>, bool) = match self.cache.lookup(ids).await {
            Ok(cached) => {
                let mut misses = Vec::new();
                for (id, hit) in ids.iter().zip(cached) {
                    match hit {
                        Some(f) => {
                            figures.insert(id.clone(), f);
                        }
                        None => misses.push(id.clone()),
                    }
                }
                (misses, true)
            }
            Err(e) => {
                tracing::warn!(error = %e, "stock cache unavailable; reading stock from Postgres");
                (ids.to_vec(), false)
            }
        };
        if misses.is_empty() {
            return Ok((figures, Source::Cache));
        }
        let loaded: Vec<(String, StockFigure)> = match from_db {
            Some(mut known) => misses
                .iter()
                .filter_map(|id| known.remove(id).map(|f| (id.clone(), f)))
                .collect(),
            None => PgStock::figures(&self.pool, &misses).await?,
        };
        if redis_up {
            self.cache.refresh(&loaded).await;
        }
        figures.extend(loaded);
        Ok((figures, Source::Database))
    }
}

fn with_source(mut resp: Response, source: Source) -> Response {
    resp.headers.insert(
        aws_lambda_events::http::HeaderName::from_static(SOURCE_HEADER),
        aws_lambda_events::http::HeaderValue::from_static(source.as_str()),
    );
    resp
}
