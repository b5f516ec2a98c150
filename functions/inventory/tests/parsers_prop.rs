//! Property tests of the back office's parsers of outside input: `If-Match`, the
//! `GET /products` cursor and limit, and the admin bodies after JSON decoding. Inputs are
//! arbitrary; properties: never a panic, and what we give out parses back to itself.

use inventory::product::{
    Adjustment, AdjustmentRequest, IfMatch, NewProduct, NewProductRequest, cursor_after, etag,
    page_limit, parse_cursor,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn headers_and_query_values_never_panic(raw in any::<String>()) {
        let _ = IfMatch::parse(&raw);
        let _ = parse_cursor(&raw);
        let _ = page_limit(Some(&raw));
    }

    #[test]
    fn an_etag_we_give_out_is_an_if_match_for_its_version(version in 0i64..i64::MAX) {
        let parsed = IfMatch::parse(&etag(version));
        prop_assert_eq!(parsed, Some(IfMatch::Versions(vec![version])));
    }

    #[test]
    fn a_cursor_we_give_out_continues_after_its_product(id in "[A-Za-z0-9_-]{1,64}") {
        prop_assert_eq!(parse_cursor(&cursor_after(&id)), Some(id));
    }

    #[test]
    fn any_decoded_body_is_accepted_or_refused_with_a_message(
        id in any::<String>(),
        name in any::<String>(),
        price in any::<i64>(),
        currency in any::<String>(),
        stock in proptest::option::of(any::<i64>()),
        delta in any::<i64>(),
    ) {
        let product = NewProduct::try_from(NewProductRequest {
            product_id: id.clone(),
            name: name.clone(),
            price_cents: price,
            currency,
            stock,
            low_stock_threshold: None,
        });
        if let Err(message) = product {
            prop_assert!(!message.is_empty());
        }
        let adjustment = Adjustment::try_from(AdjustmentRequest {
            adjustment_id: id,
            delta,
            reason: name,
        });
        match adjustment {
            Ok(a) => prop_assert!(a.delta != 0),
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }
}
