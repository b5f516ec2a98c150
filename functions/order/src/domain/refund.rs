//! An admin's refund (`POST /admin/orders/{id}/refunds`): the body becomes a `ValidRefund`
//! (exactly one of an amount or lines), then `plan` prices it against the order and the
//! refunds already asked for: lines at their purchase price, never more money than the
//! order's total, never more units of a line than were bought.

use super::request::{LineRequest, MAX_LINES, ProductId, Quantity};
use super::saga::Status;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub const MAX_REASON: usize = 500;

/// The body as sent. Unknown fields are refused: a misspelt `amount_cent` must not become
/// a refund of something else.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    #[serde(default)]
    pub amount_cents: Option<i64>,
    #[serde(default)]
    pub lines: Option<Vec<LineRequest>>,
    #[serde(default)]
    pub restock: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What is refunded: money, or units of the order's lines (merged per product).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundBy {
    Amount(i64),
    Lines(Vec<(ProductId, Quantity)>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidRefund {
    pub by: RefundBy,
    pub restock: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRefund {
    #[error("give exactly one of amount_cents or lines")]
    OneOf,
    #[error("amount_cents must be a positive number of cents")]
    Amount,
    #[error("lines must hold between 1 and {MAX_LINES} lines")]
    LineCount,
    #[error("lines[{0}]: product_id must be {rule}", rule = shared::product::PRODUCT_ID_RULE)]
    Product(usize),
    #[error("lines[{0}]: quantity must be between 1 and {max}", max = super::request::MAX_QUANTITY)]
    Quantity(usize),
    #[error("restock needs lines: a refund by amount names no units to put back")]
    RestockWithoutLines,
    #[error("reason must be at most {MAX_REASON} characters")]
    Reason,
}

impl TryFrom<RefundRequest> for ValidRefund {
    type Error = InvalidRefund;

    fn try_from(req: RefundRequest) -> Result<Self, Self::Error> {
        let by = match (req.amount_cents, req.lines) {
            (Some(a), None) if a > 0 => RefundBy::Amount(a),
            (Some(_), None) => return Err(InvalidRefund::Amount),
            (None, Some(lines)) => {
                if lines.is_empty() || lines.len() > MAX_LINES {
                    return Err(InvalidRefund::LineCount);
                }
                let mut merged: Vec<(ProductId, Quantity)> = Vec::with_capacity(lines.len());
                for (i, l) in lines.iter().enumerate() {
                    let p = ProductId::parse(&l.product_id).ok_or(InvalidRefund::Product(i))?;
                    let q = Quantity::parse(l.quantity).ok_or(InvalidRefund::Quantity(i))?;
                    match merged.iter_mut().find(|(id, _)| *id == p) {
                        Some((_, have)) => {
                            *have = Quantity::parse(i64::from(have.get()) + i64::from(q.get()))
                                .ok_or(InvalidRefund::Quantity(i))?;
                        }
                        None => merged.push((p, q)),
                    }
                }
                RefundBy::Lines(merged)
            }
            _ => return Err(InvalidRefund::OneOf),
        };
        if req.restock && matches!(by, RefundBy::Amount(_)) {
            return Err(InvalidRefund::RestockWithoutLines);
        }
        let reason = req.reason.as_deref().unwrap_or("").trim().to_string();
        if reason.chars().count() > MAX_REASON {
            return Err(InvalidRefund::Reason);
        }
        Ok(ValidRefund {
            by,
            restock: req.restock,
            reason,
        })
    }
}

impl ValidRefund {
    /// The `Idempotency-Key` request hash: hex sha256 of the canonical JSON of the parsed
    /// refund (the same refund however its body was written).
    pub fn request_hash(&self) -> String {
        // Plain structs of strings, integers and booleans always serialise.
        let json = serde_json::to_string(self).unwrap_or_default();
        hex::encode(Sha256::digest(json.as_bytes()))
    }
}

/// A line of the order as bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchased {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

/// A refund already asked for (and not failed): it counts against what is left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prior {
    pub amount_cents: i64,
    /// `(product_id, quantity)`; empty for a refund by amount.
    pub lines: Vec<(String, i64)>,
}

/// A refunded line, at its purchase price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub amount_cents: i64,
    pub lines: Vec<RefundLine>,
}

/// Why a refund cannot be given (a 422 `exceeds_refundable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exceeds {
    #[error(
        "refunding {amount} cents would exceed the order: {left} of {total} cents are left to refund"
    )]
    Amount { amount: i64, total: i64, left: i64 },
    #[error(
        "product {product_id}: refunding {asked} would exceed the {bought} bought ({refunded} already refunded)"
    )]
    Units {
        product_id: String,
        asked: i64,
        bought: i64,
        refunded: i64,
    },
}

/// Only an order the customer paid for and keeps can be refunded by an admin (a cancelled
/// order is refunded in full by its cancel).
pub fn refundable(status: Status) -> bool {
    matches!(
        status,
        Status::Confirmed | Status::Shipped | Status::Delivered
    )
}

/// Prices `refund` against the order's lines and total and the refunds before it.
pub fn plan(
    total_cents: i64,
    purchased: &[Purchased],
    prior: &[Prior],
    refund: &ValidRefund,
) -> Result<Planned, Exceeds> {
    let lines = match &refund.by {
        RefundBy::Amount(_) => vec![],
        RefundBy::Lines(asked) => {
            let mut refunded: BTreeMap<&str, i64> = BTreeMap::new();
            for (p, q) in prior.iter().flat_map(|r| &r.lines) {
                *refunded.entry(p.as_str()).or_default() += q;
            }
            let mut out = Vec::with_capacity(asked.len());
            for (product, quantity) in asked {
                let asked = i64::from(quantity.get());
                let bought = purchased.iter().find(|l| l.product_id == product.as_str());
                let already = refunded.get(product.as_str()).copied().unwrap_or(0);
                let bought_units = bought.map_or(0, |l| l.quantity);
                match bought {
                    Some(line) if already + asked <= line.quantity => out.push(RefundLine {
                        product_id: line.product_id.clone(),
                        quantity: asked,
                        unit_price_cents: line.unit_price_cents,
                    }),
                    _ => {
                        return Err(Exceeds::Units {
                            product_id: product.as_str().to_string(),
                            asked,
                            bought: bought_units,
                            refunded: already,
                        });
                    }
                }
            }
            out
        }
    };
    let amount = match &refund.by {
        RefundBy::Amount(a) => *a,
        // Within the bought units of an order whose total fits: no overflow.
        RefundBy::Lines(_) => lines
            .iter()
            .map(|l| l.quantity.saturating_mul(l.unit_price_cents))
            .fold(0i64, i64::saturating_add),
    };
    let used = prior
        .iter()
        .map(|r| r.amount_cents)
        .fold(0i64, i64::saturating_add);
    let left = total_cents.saturating_sub(used).max(0);
    if amount > left {
        return Err(Exceeds::Amount {
            amount,
            total: total_cents,
            left,
        });
    }
    Ok(Planned {
        amount_cents: amount,
        lines,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ValidRefund, InvalidRefund> {
        ValidRefund::try_from(serde_json::from_str::<RefundRequest>(json).expect("json"))
    }

    fn bought() -> Vec<Purchased> {
        vec![
            Purchased {
                product_id: "sku-1".into(),
                quantity: 2,
                unit_price_cents: 1999,
            },
            Purchased {
                product_id: "sku-2".into(),
                quantity: 1,
                unit_price_cents: 500,
            },
        ]
    }

    const TOTAL: i64 = 2 * 1999 + 500;

    #[test]
    fn exactly_one_of_amount_or_lines_is_accepted() {
        assert_eq!(parse("{}").unwrap_err(), InvalidRefund::OneOf);
        assert_eq!(
            parse(r#"{"amount_cents":1,"lines":[{"product_id":"a","quantity":1}]}"#).unwrap_err(),
            InvalidRefund::OneOf
        );
        assert_eq!(
            parse(r#"{"amount_cents":100}"#).unwrap().by,
            RefundBy::Amount(100)
        );
        assert!(matches!(
            parse(r#"{"lines":[{"product_id":"a","quantity":1}],"restock":true}"#)
                .unwrap()
                .by,
            RefundBy::Lines(_)
        ));
    }

    #[test]
    fn malformed_amounts_lines_and_reasons_are_refused() {
        assert_eq!(
            parse(r#"{"amount_cents":0}"#).unwrap_err(),
            InvalidRefund::Amount
        );
        assert_eq!(
            parse(r#"{"amount_cents":-5}"#).unwrap_err(),
            InvalidRefund::Amount
        );
        assert_eq!(
            parse(r#"{"lines":[]}"#).unwrap_err(),
            InvalidRefund::LineCount
        );
        assert_eq!(
            parse(r#"{"lines":[{"product_id":"a b","quantity":1}]}"#).unwrap_err(),
            InvalidRefund::Product(0)
        );
        assert_eq!(
            parse(r#"{"lines":[{"product_id":"a","quantity":0}]}"#).unwrap_err(),
            InvalidRefund::Quantity(0)
        );
        assert_eq!(
            parse(r#"{"amount_cents":10,"restock":true}"#).unwrap_err(),
            InvalidRefund::RestockWithoutLines
        );
        let long = format!(
            r#"{{"amount_cents":10,"reason":"{}"}}"#,
            "r".repeat(MAX_REASON + 1)
        );
        assert_eq!(parse(&long).unwrap_err(), InvalidRefund::Reason);
        assert!(serde_json::from_str::<RefundRequest>(r#"{"amount_cent":10}"#).is_err());
    }

    #[test]
    fn the_hash_is_the_same_for_the_same_refund_and_differs_otherwise() {
        let a = parse(r#"{"amount_cents":100,"reason":"late"}"#).unwrap();
        let b = parse(r#"{ "reason" : " late ", "amount_cents" : 100 }"#).unwrap();
        let c = parse(r#"{"amount_cents":101,"reason":"late"}"#).unwrap();
        assert_eq!(a.request_hash(), b.request_hash());
        assert_ne!(a.request_hash(), c.request_hash());
    }

    #[test]
    fn lines_are_priced_at_their_purchase_price() {
        let r = parse(r#"{"lines":[{"product_id":"sku-1","quantity":1},{"product_id":"sku-2","quantity":1}]}"#).unwrap();
        let p = plan(TOTAL, &bought(), &[], &r).unwrap();
        assert_eq!(p.amount_cents, 1999 + 500);
        assert_eq!(p.lines[0].unit_price_cents, 1999);
    }

    #[test]
    fn refunds_never_sum_above_the_total() {
        let all = parse(&format!(r#"{{"amount_cents":{TOTAL}}}"#)).unwrap();
        assert_eq!(
            plan(TOTAL, &bought(), &[], &all).unwrap().amount_cents,
            TOTAL
        );
        let one_more = parse(&format!(r#"{{"amount_cents":{}}}"#, TOTAL + 1)).unwrap();
        assert!(matches!(
            plan(TOTAL, &bought(), &[], &one_more).unwrap_err(),
            Exceeds::Amount { left: TOTAL, .. }
        ));
        let prior = [Prior {
            amount_cents: TOTAL - 100,
            lines: vec![],
        }];
        let r = parse(r#"{"amount_cents":101}"#).unwrap();
        assert_eq!(
            plan(TOTAL, &bought(), &prior, &r).unwrap_err(),
            Exceeds::Amount {
                amount: 101,
                total: TOTAL,
                left: 100
            }
        );
        // A refund by lines counts against the same total.
        let r = parse(r#"{"lines":[{"product_id":"sku-1","quantity":1}]}"#).unwrap();
        assert!(matches!(
            plan(TOTAL, &bought(), &prior, &r).unwrap_err(),
            Exceeds::Amount { .. }
        ));
    }

    #[test]
    fn units_never_exceed_what_was_bought_across_refunds() {
        let r = parse(r#"{"lines":[{"product_id":"sku-1","quantity":3}]}"#).unwrap();
        assert_eq!(
            plan(TOTAL, &bought(), &[], &r).unwrap_err(),
            Exceeds::Units {
                product_id: "sku-1".into(),
                asked: 3,
                bought: 2,
                refunded: 0
            }
        );
        let prior = [Prior {
            amount_cents: 1999,
            lines: vec![("sku-1".into(), 1)],
        }];
        let two = parse(r#"{"lines":[{"product_id":"sku-1","quantity":2}]}"#).unwrap();
        assert!(matches!(
            plan(TOTAL, &bought(), &prior, &two).unwrap_err(),
            Exceeds::Units { refunded: 1, .. }
        ));
        let one = parse(r#"{"lines":[{"product_id":"sku-1","quantity":1}]}"#).unwrap();
        assert_eq!(
            plan(TOTAL, &bought(), &prior, &one).unwrap().amount_cents,
            1999
        );
        let stranger = parse(r#"{"lines":[{"product_id":"sku-9","quantity":1}]}"#).unwrap();
        assert!(matches!(
            plan(TOTAL, &bought(), &[], &stranger).unwrap_err(),
            Exceeds::Units { bought: 0, .. }
        ));
    }

    #[test]
    fn only_confirmed_shipped_and_delivered_orders_are_refundable() {
        for (s, ok) in [
            (Status::Pending, false),
            (Status::Confirmed, true),
            (Status::Shipped, true),
            (Status::Delivered, true),
            (Status::Cancelled, false),
        ] {
            assert_eq!(refundable(s), ok, "{s}");
        }
    }
}
