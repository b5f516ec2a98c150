//! Pure rules of the catalog back office: what a valid new product, patch or stock
//! adjustment is (wire types become these with `TryFrom` at the edge), the `If-Match`
//! header, the opaque cursor of `GET /products`, and when stock has fallen low. No I/O.

use base64::Engine as _;
use serde::Deserialize;

/// Longest product name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest adjustment reason.
pub const MAX_REASON_CHARS: usize = 200;
/// Largest stock figure or adjustment (the columns are `int`).
pub const MAX_UNITS: i64 = 1_000_000_000;

/// `POST /admin/products` as it arrives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProductRequest {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    #[serde(default)]
    pub stock: Option<i64>,
    #[serde(default)]
    pub low_stock_threshold: Option<i64>,
}

/// A product that may be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i32,
    pub low_stock_threshold: i32,
}

impl TryFrom<NewProductRequest> for NewProduct {
    type Error = String;

    fn try_from(r: NewProductRequest) -> Result<Self, String> {
        if !shared::product::valid_product_id(&r.product_id) {
            return Err(format!(
                "product_id must be {}",
                shared::product::PRODUCT_ID_RULE
            ));
        }
        Ok(NewProduct {
            name: name(r.name)?,
            price_cents: price(r.price_cents)?,
            currency: currency(r.currency)?,
            stock: units("stock", r.stock.unwrap_or(0))?,
            low_stock_threshold: units("low_stock_threshold", r.low_stock_threshold.unwrap_or(0))?,
            product_id: r.product_id,
        })
    }
}

/// `PATCH /admin/products/{id}` as it arrives: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    pub name: Option<String>,
    pub price_cents: Option<i64>,
    pub discontinued: Option<bool>,
    pub low_stock_threshold: Option<i64>,
}

/// What may change in a catalog entry. `currency` is not offered over HTTP (orders already
/// priced in one currency would then mix); the seed may change it, as it always could.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price_cents: Option<i64>,
    pub currency: Option<String>,
    pub discontinued: Option<bool>,
    pub low_stock_threshold: Option<i32>,
}

impl TryFrom<PatchRequest> for ProductPatch {
    type Error = String;

    fn try_from(r: PatchRequest) -> Result<Self, String> {
        Ok(ProductPatch {
            name: r.name.map(name).transpose()?,
            price_cents: r.price_cents.map(price).transpose()?,
            currency: None,
            discontinued: r.discontinued,
            low_stock_threshold: r
                .low_stock_threshold
                .map(|t| units("low_stock_threshold", t))
                .transpose()?,
        })
    }
}

/// `POST /admin/products/{id}/stock-adjustments` as it arrives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    pub adjustment_id: String,
    pub delta: i64,
    pub reason: String,
}

/// A stock adjustment that may be applied. Ids made by the system (`initial:..`,
/// `seed:..`) hold a colon, which a client's id cannot: the two never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub adjustment_id: String,
    pub delta: i32,
    pub reason: String,
}

impl TryFrom<AdjustmentRequest> for Adjustment {
    type Error = String;

    fn try_from(r: AdjustmentRequest) -> Result<Self, String> {
        if !shared::product::valid_product_id(&r.adjustment_id) {
            return Err(format!(
                "adjustment_id must be {}",
                shared::product::PRODUCT_ID_RULE
            ));
        }
        if r.delta == 0 {
            return Err("delta must not be 0".into());
        }
        if r.delta.abs() > MAX_UNITS {
            return Err(format!("delta must be within ±{MAX_UNITS}"));
        }
        let reason = r.reason.trim().to_string();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(format!("reason must be 1 to {MAX_REASON_CHARS} characters"));
        }
        Ok(Adjustment {
            adjustment_id: r.adjustment_id,
            delta: i32::try_from(r.delta).map_err(|_| "delta is out of range".to_string())?,
            reason,
        })
    }
}

impl Adjustment {
    /// The adjustment that gives a new product its initial stock.
    pub fn initial(product_id: &str, stock: i32) -> Self {
        Adjustment {
            adjustment_id: format!("initial:{product_id}"),
            delta: stock,
            reason: "initial stock".into(),
        }
    }

    /// The adjustment a seed makes to bring a product from `available` to `stock`: its id
    /// names the product's stock version it starts from and the target, so running the
    /// same seed twice over the same state applies it once.
    pub fn seed(product_id: &str, stock_version: i64, available: i32, stock: i32) -> Self {
        Adjustment {
            adjustment_id: format!("seed:{product_id}:v{stock_version}:{stock}"),
            delta: stock - available,
            reason: format!("seed sets stock to {stock}"),
        }
    }
}

fn name(raw: String) -> Result<String, String> {
    let n = raw.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name must be 1 to {MAX_NAME_CHARS} characters"));
    }
    Ok(n.to_string())
}

fn price(cents: i64) -> Result<i64, String> {
    if cents < 0 {
        return Err("price_cents must not be negative".into());
    }
    Ok(cents)
}

/// ISO 4217 codes are three capital letters.
fn currency(raw: String) -> Result<String, String> {
    if raw.len() != 3 || !raw.bytes().all(|c| c.is_ascii_uppercase()) {
        return Err("currency must be an ISO 4217 code in capitals (EUR, USD, ...)".into());
    }
    Ok(raw)
}

fn units(field: &str, n: i64) -> Result<i32, String> {
    if !(0..=MAX_UNITS).contains(&n) {
        return Err(format!("{field} must be 0 to {MAX_UNITS}"));
    }
    i32::try_from(n).map_err(|_| format!("{field} is out of range"))
}

/// The `If-Match` header of a PATCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// `"3"` or `"3", "4"`: one of these versions.
    Versions(Vec<i64>),
}

impl IfMatch {
    /// `None` when the header cannot be read (a 400). Weak tags (`W/"3"`) never match
    /// (RFC 9110 13.1.1 compares strongly), so they are refused as malformed.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if raw == "*" {
            return Some(IfMatch::Any);
        }
        let versions: Option<Vec<i64>> = raw
            .split(',')
            .map(|tag| {
                let tag = tag.trim();
                let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
                if inner.is_empty() || !inner.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                inner.parse().ok()
            })
            .collect();
        versions.filter(|v| !v.is_empty()).map(IfMatch::Versions)
    }

    pub fn matches(&self, version: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(v) => v.contains(&version),
        }
    }
}

/// The `ETag` of a product at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// Page size of `GET /products` when `?limit=` is absent.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;

/// `?limit=` (the error is the 400 message).
pub fn page_limit(raw: Option<&str>) -> Result<i64, String> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PAGE);
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(format!("limit must be a whole number from 1 to {MAX_PAGE}")),
    }
}

const CURSOR_PREFIX: &str = "after:";

/// The cursor of the page after `last_product_id`. Opaque to clients: a page ends at a
/// product id and the next starts after it, so products inserted meanwhile land either
/// before the cursor (seen on no page of this walk) or after it (seen once), never twice.
pub fn cursor_after(last_product_id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{CURSOR_PREFIX}{last_product_id}"))
}

/// The product id a cursor continues after; `None` when it is not one of ours (a 400).
pub fn parse_cursor(raw: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.strip_prefix(CURSOR_PREFIX)?;
    shared::product::valid_product_id(id).then(|| id.to_string())
}

/// True when a change of `available` from `before` to `after` crosses the product's low
/// stock threshold downwards: from above it to at or below it. 0 turns the alert off, and
/// a figure already at or below it does not alert again until it has risen above.
pub fn fell_to_low(before: i64, after: i64, threshold: i64) -> bool {
    threshold > 0 && before > threshold && after <= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(stock: Option<i64>) -> NewProductRequest {
        NewProductRequest {
            product_id: "sku-1".into(),
            name: " Mug ".into(),
            price_cents: 1299,
            currency: "EUR".into(),
            stock,
            low_stock_threshold: None,
        }
    }

    #[test]
    fn a_new_product_is_trimmed_and_defaults_to_no_stock_and_no_alert() {
        let p = NewProduct::try_from(new(None)).expect("valid");
        assert_eq!(
            (p.name.as_str(), p.stock, p.low_stock_threshold),
            ("Mug", 0, 0)
        );
    }

    #[test]
    fn a_new_product_needs_a_sane_id_name_price_currency_stock_and_threshold() {
        let cases: Vec<(NewProductRequest, &str)> = vec![
            (
                NewProductRequest {
                    product_id: "a b".into(),
                    ..new(None)
                },
                "product_id",
            ),
            (
                NewProductRequest {
                    name: "  ".into(),
                    ..new(None)
                },
                "name",
            ),
            (
                NewProductRequest {
                    name: "x".repeat(201),
                    ..new(None)
                },
                "name",
            ),
            (
                NewProductRequest {
                    price_cents: -1,
                    ..new(None)
                },
                "price_cents",
            ),
            (
                NewProductRequest {
                    currency: "eur".into(),
                    ..new(None)
                },
                "currency",
            ),
            (
                NewProductRequest {
                    currency: "EURO".into(),
                    ..new(None)
                },
                "currency",
            ),
            (new(Some(-1)), "stock"),
            (new(Some(MAX_UNITS + 1)), "stock"),
            (
                NewProductRequest {
                    low_stock_threshold: Some(-1),
                    ..new(None)
                },
                "low_stock_threshold",
            ),
        ];
        for (bad, field) in cases {
            let err = NewProduct::try_from(bad.clone()).unwrap_err();
            assert!(err.contains(field), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_patch_checks_only_what_it_carries() {
        let p = ProductPatch::try_from(PatchRequest {
            discontinued: Some(true),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(p.discontinued, Some(true));
        assert!(p.name.is_none() && p.currency.is_none());
        assert!(
            ProductPatch::try_from(PatchRequest {
                price_cents: Some(-5),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn an_adjustment_needs_an_id_a_nonzero_bounded_delta_and_a_reason() {
        let ok = AdjustmentRequest {
            adjustment_id: "adj-1".into(),
            delta: -3,
            reason: "breakage".into(),
        };
        assert_eq!(Adjustment::try_from(ok.clone()).expect("valid").delta, -3);
        for bad in [
            AdjustmentRequest {
                adjustment_id: "seed:x".into(),
                ..ok.clone()
            },
            AdjustmentRequest {
                delta: 0,
                ..ok.clone()
            },
            AdjustmentRequest {
                delta: MAX_UNITS + 1,
                ..ok.clone()
            },
            AdjustmentRequest {
                reason: " ".into(),
                ..ok.clone()
            },
        ] {
            assert!(Adjustment::try_from(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn seed_adjustment_ids_are_deterministic_and_never_a_clients() {
        let a = Adjustment::seed("mug", 4, 3, 10);
        assert_eq!(a, Adjustment::seed("mug", 4, 3, 10));
        assert_eq!(a.delta, 7);
        assert!(!shared::product::valid_product_id(&a.adjustment_id));
        assert!(!shared::product::valid_product_id(
            &Adjustment::initial("mug", 1).adjustment_id
        ));
    }

    #[test]
    fn if_match_reads_strong_tags_lists_and_star_and_refuses_the_rest() {
        assert_eq!(IfMatch::parse("\"3\""), Some(IfMatch::Versions(vec![3])));
        assert_eq!(
            IfMatch::parse(" \"3\", \"4\""),
            Some(IfMatch::Versions(vec![3, 4]))
        );
        assert_eq!(IfMatch::parse("*"), Some(IfMatch::Any));
        for bad in ["3", "W/\"3\"", "\"\"", "\"x\"", "", "\"-1\""] {
            assert_eq!(IfMatch::parse(bad), None, "{bad:?}");
        }
        assert!(IfMatch::Versions(vec![3, 4]).matches(4));
        assert!(!IfMatch::Versions(vec![3]).matches(4));
        assert_eq!(etag(7), "\"7\"");
    }

    #[test]
    fn page_limits_default_to_50_and_stay_within_1_to_200() {
        assert_eq!(page_limit(None), Ok(50));
        assert_eq!(page_limit(Some("200")), Ok(200));
        for bad in ["0", "201", "-1", "x", ""] {
            assert!(page_limit(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(
            parse_cursor(&cursor_after("sku-9")).as_deref(),
            Some("sku-9")
        );
        let foreign = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("sku-9");
        let bad_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("after:a b");
        for bad in ["", "!!", foreign.as_str(), bad_id.as_str()] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn low_stock_alerts_once_when_crossing_down_and_never_when_off() {
        assert!(fell_to_low(6, 5, 5));
        assert!(fell_to_low(10, 0, 5));
        assert!(!fell_to_low(5, 4, 5), "already low: no second alert");
        assert!(!fell_to_low(7, 6, 5));
        assert!(!fell_to_low(4, 9, 5), "rising never alerts");
        assert!(!fell_to_low(10, 0, 0), "threshold 0 is off");
    }
}
