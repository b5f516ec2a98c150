//! `POST /orders` at the edge: the wire body (`OrderRequest`) becomes a `ValidOrder` through
//! `TryFrom`, so nothing past this point ever sees an unchecked quantity or token.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: u32 = 1000;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The body as the client sent it.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderRequest {
    pub items: Vec<LineRequest>,
    pub payment_token: String,
    /// Optional, so clients from before fulfilment keep working.
    #[serde(default)]
    pub shipping_address: Option<super::address::AddressRequest>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LineRequest {
    pub product_id: String,
    pub quantity: i64,
}

/// Why a request body is not an order (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOrder {
    #[error("an order needs between 1 and {MAX_LINES} lines, got {0}")]
    LineCount(usize),
    #[error("line {line}: product_id must be {}", shared::product::PRODUCT_ID_RULE)]
    InvalidProduct { line: usize },
    #[error("line {line}: quantity must be between 1 and {MAX_QUANTITY}, got {quantity}")]
    Quantity { line: usize, quantity: i64 },
    #[error("product {0}: total quantity over all its lines exceeds {MAX_QUANTITY}")]
    MergedQuantity(String),
    #[error("payment_token must be a payment token starting with \"tok_\"")]
    PaymentToken,
    #[error(transparent)]
    Address(#[from] super::address::InvalidAddress),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProductId(String);

impl ProductId {
    /// Surrounding whitespace is forgiven; inside, only the catalog's charset
    /// (`shared::product`), so an id that cannot exist is a 400, not a lookup.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        shared::product::valid_product_id(s).then(|| ProductId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 1..=1000 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub fn parse(n: i64) -> Option<Self> {
        u32::try_from(n)
            .ok()
            .filter(|q| (1..=MAX_QUANTITY).contains(q))
            .map(Quantity)
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A payment provider's token (`tok_...`); never a card number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PaymentToken(String);

impl PaymentToken {
    pub fn parse(s: &str) -> Option<Self> {
        (s.starts_with("tok_")
            && s.len() > 4
            && s.len() <= 255
            && s.chars().all(|c| c.is_ascii_graphic()))
        .then(|| PaymentToken(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

/// A well-formed order: 1..=100 lines, one per product (repeated products merged, in order of
/// first appearance), each of 1..=1000 units, and a payment token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidOrder {
    pub items: Vec<ValidLine>,
    pub payment_token: PaymentToken,
    /// Left out of the canonical JSON when absent, so an order without one hashes as it
    /// did before addresses existed (a retry across the upgrade is still a replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<super::address::ShippingAddress>,
}

impl TryFrom<OrderRequest> for ValidOrder {
    type Error = InvalidOrder;

    fn try_from(req: OrderRequest) -> Result<Self, Self::Error> {
        if req.items.is_empty() || req.items.len() > MAX_LINES {
            return Err(InvalidOrder::LineCount(req.items.len()));
        }
        let mut items: Vec<ValidLine> = Vec::with_capacity(req.items.len());
        for (i, line) in req.items.iter().enumerate() {
            let product_id = ProductId::parse(&line.product_id)
                .ok_or(InvalidOrder::InvalidProduct { line: i + 1 })?;
            let quantity = Quantity::parse(line.quantity).ok_or(InvalidOrder::Quantity {
                line: i + 1,
                quantity: line.quantity,
            })?;
            match items.iter_mut().find(|l| l.product_id == product_id) {
                Some(existing) => {
                    existing.quantity = Quantity::parse(
                        i64::from(existing.quantity.get()) + i64::from(quantity.get()),
                    )
                    .ok_or_else(|| InvalidOrder::MergedQuantity(product_id.0.clone()))?;
                }
                None => items.push(ValidLine {
                    product_id,
                    quantity,
                }),
            }
        }
        let payment_token =
            PaymentToken::parse(&req.payment_token).ok_or(InvalidOrder::PaymentToken)?;
        let shipping_address = req
            .shipping_address
            .map(super::address::ShippingAddress::try_from)
            .transpose()?;
        Ok(ValidOrder {
            items,
            payment_token,
            shipping_address,
        })
    }
}

impl ValidOrder {
    /// The canonical JSON of the parsed order (fixed field order, merged lines): two bodies
    /// that mean the same order hash the same, whatever their whitespace or key order.
    pub fn canonical_json(&self) -> String {
        // Serialising plain structs of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `Idempotency-Key` request hash: hex sha256 of the canonical JSON.
    pub fn request_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    pub fn product_ids(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|l| l.product_id.as_str().to_string())
            .collect()
    }
}

/// The optional `Idempotency-Key` header value: 1..=255 visible ASCII characters
/// (0x21-0x7E). Parsed from the raw header bytes: a value that is not text must be refused,
/// not taken as "no key", or a retry would create (and charge) a second order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Option<Self> {
        ((1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&raw.len())
            && raw.iter().all(|b| (0x21..=0x7e).contains(b)))
        .then(|| IdempotencyKey(String::from_utf8_lossy(raw).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(lines: &[(&str, i64)], token: &str) -> OrderRequest {
        OrderRequest {
            items: lines
                .iter()
                .map(|(p, q)| LineRequest {
                    product_id: p.to_string(),
                    quantity: *q,
                })
                .collect(),
            payment_token: token.to_string(),
            shipping_address: None,
        }
    }

    #[test]
    fn a_well_formed_request_becomes_a_valid_order() {
        let order =
            ValidOrder::try_from(req(&[("sku-1", 2), ("sku-2", 1000)], "tok_visa")).expect("valid");
        assert_eq!(order.items.len(), 2);
        assert_eq!(order.items[1].quantity.get(), 1000);
        assert_eq!(order.payment_token.as_str(), "tok_visa");
    }

    #[test]
    fn quantity_zero_negative_or_over_a_thousand_is_rejected() {
        for q in [0, -1, 1001, i64::MAX] {
            let err = ValidOrder::try_from(req(&[("sku-1", q)], "tok_visa")).unwrap_err();
            assert_eq!(
                err,
                InvalidOrder::Quantity {
                    line: 1,
                    quantity: q
                }
            );
        }
    }

    #[test]
    fn between_one_and_a_hundred_lines_are_accepted() {
        let ids: Vec<String> = (0..101).map(|i| format!("sku-{i}")).collect();
        let lines = |n: usize| ids[..n].iter().map(|p| (p.as_str(), 1)).collect::<Vec<_>>();
        assert!(ValidOrder::try_from(req(&lines(100), "tok_visa")).is_ok());
        assert_eq!(
            ValidOrder::try_from(req(&lines(101), "tok_visa")).unwrap_err(),
            InvalidOrder::LineCount(101)
        );
        assert_eq!(
            ValidOrder::try_from(req(&[], "tok_visa")).unwrap_err(),
            InvalidOrder::LineCount(0)
        );
    }

    #[test]
    fn a_token_not_starting_with_tok_is_rejected() {
        for token in ["4242424242424242", "", "tok_", "TOK_visa", "tok_ visa"] {
            assert_eq!(
                ValidOrder::try_from(req(&[("sku-1", 1)], token)).unwrap_err(),
                InvalidOrder::PaymentToken,
                "{token:?}"
            );
        }
    }

    #[test]
    fn an_empty_product_id_is_rejected() {
        let err = ValidOrder::try_from(req(&[("sku-1", 1), ("  ", 1)], "tok_visa")).unwrap_err();
        assert_eq!(err, InvalidOrder::InvalidProduct { line: 2 });
    }

    #[test]
    fn a_product_id_outside_the_catalog_charset_is_rejected() {
        let long = "p".repeat(65);
        for bad in [
            "sku\0",
            "sku 1",
            "sku/../x",
            "ｓｋｕ",
            "sku\u{7f}",
            long.as_str(),
        ] {
            let err = ValidOrder::try_from(req(&[(bad, 1)], "tok_visa")).unwrap_err();
            assert_eq!(err, InvalidOrder::InvalidProduct { line: 1 }, "{bad:?}");
        }
        assert!(ValidOrder::try_from(req(&[(" sku-1 ", 1)], "tok_visa")).is_ok());
    }

    #[test]
    fn lines_for_the_same_product_are_merged_within_the_limit() {
        let order =
            ValidOrder::try_from(req(&[("a", 2), ("b", 1), ("a", 3)], "tok_visa")).expect("valid");
        let merged: Vec<(&str, u32)> = order
            .items
            .iter()
            .map(|l| (l.product_id.as_str(), l.quantity.get()))
            .collect();
        assert_eq!(merged, vec![("a", 5), ("b", 1)]);
        let err = ValidOrder::try_from(req(&[("a", 600), ("a", 600)], "tok_visa")).unwrap_err();
        assert_eq!(err, InvalidOrder::MergedQuantity("a".into()));
    }

    #[test]
    fn the_request_hash_ignores_formatting_but_not_content() {
        let parse = |json: &str| {
            let r: OrderRequest = serde_json::from_str(json).expect("json");
            ValidOrder::try_from(r).expect("valid").request_hash()
        };
        let a = parse(r#"{"items":[{"product_id":"a","quantity":1}],"payment_token":"tok_visa"}"#);
        let b = parse(
            r#"{ "payment_token" : "tok_visa", "items" : [ {"quantity":1, "product_id":"a"} ] }"#,
        );
        let c = parse(r#"{"items":[{"product_id":"a","quantity":2}],"payment_token":"tok_visa"}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn wrong_json_types_do_not_parse() {
        for json in [
            r#"{"items":[{"product_id":"a","quantity":"1"}],"payment_token":"tok_visa"}"#,
            r#"{"items":{"product_id":"a"},"payment_token":"tok_visa"}"#,
            r#"{"items":[{"product_id":1,"quantity":1}],"payment_token":"tok_visa"}"#,
            r#"{"items":[{"product_id":"a","quantity":1}]}"#,
            r#"{"items":[{"product_id":"a","quantity":1e30}],"payment_token":"tok_visa"}"#,
        ] {
            assert!(
                serde_json::from_str::<OrderRequest>(json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn idempotency_keys_are_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::parse(b"").is_none());
        assert!(IdempotencyKey::parse("k".repeat(255).as_bytes()).is_some());
        assert!(IdempotencyKey::parse("k".repeat(256).as_bytes()).is_none());
        assert!(IdempotencyKey::parse(b"!~azAZ09-_.:").is_some());
        let bad: [&[u8]; 6] = [
            "clé".as_bytes(),
            b"a b",
            b"a\tb",
            b"a\0b",
            b"\x7f",
            b"\xff\xfe",
        ];
        for bad in bad {
            assert!(IdempotencyKey::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_shipping_address_is_optional_checked_and_part_of_the_hash() {
        let parse = |json: &str| {
            let r: OrderRequest = serde_json::from_str(json).expect("json");
            ValidOrder::try_from(r)
        };
        let without = r#"{"items":[{"product_id":"a","quantity":1}],"payment_token":"tok_visa"}"#;
        let with = |country: &str| {
            format!(
                r#"{{"items":[{{"product_id":"a","quantity":1}}],"payment_token":"tok_visa","shipping_address":{{"name":"Ada","line1":"1 Main St","city":"Paris","postal_code":"75001","country":"{country}"}}}}"#
            )
        };
        let plain = parse(without).expect("valid");
        assert_eq!(plain.shipping_address, None);
        // The hash of an order without an address is what it was before addresses existed.
        assert!(!plain.canonical_json().contains("shipping_address"));
        let fr = parse(&with("FR")).expect("valid");
        assert_eq!(
            fr.shipping_address.as_ref().map(|a| a.city.as_str()),
            Some("Paris")
        );
        assert_ne!(fr.request_hash(), plain.request_hash());
        assert_ne!(
            fr.request_hash(),
            parse(&with("DE")).unwrap().request_hash()
        );
        assert!(matches!(
            parse(&with("fr")).unwrap_err(),
            InvalidOrder::Address(crate::domain::address::InvalidAddress::Country)
        ));
    }
}
