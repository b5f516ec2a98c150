//! Property tests of `POST /orders` at the edge: the JSON body (`OrderRequest`, then
//! `ValidOrder`) and the `Idempotency-Key` header, fed arbitrary bytes and mutations of the
//! sample request under `events/`. Never a panic; a refused body is a 400 or an
//! `InvalidOrder` with a message; a valid generated order round-trips through its JSON and
//! its canonical form.

#[path = "../../../shared/tests/support/mutate.rs"]
mod mutate;

use order::domain::request::{IdempotencyKey, MAX_IDEMPOTENCY_KEY_LEN, OrderRequest, ValidOrder};
use proptest::prelude::*;
use serde_json::{Value, json};

fn sample_body() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/order/order-create.json");
    let sample: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("sample")).expect("JSON");
    serde_json::from_str(sample["body"].as_str().expect("body")).expect("JSON body")
}

/// What order-create does with a body before it touches the database.
fn parse(body: &[u8]) -> Result<ValidOrder, String> {
    let mut req = shared::http::request("POST", "/orders", "POST /orders");
    req.body = Some(String::from_utf8_lossy(body).into_owned());
    let wire: OrderRequest = shared::http::json_body(&req).map_err(|e| {
        assert_eq!(e.status, 400);
        e.message
    })?;
    ValidOrder::try_from(wire).map_err(|e| e.to_string())
}

fn check(body: &[u8]) {
    match parse(body) {
        Ok(order) => {
            assert!((1..=100).contains(&order.items.len()));
            assert!(order.payment_token.as_str().starts_with("tok_"));
            assert_eq!(order.request_hash().len(), 64);
        }
        Err(message) => assert!(!message.trim().is_empty()),
    }
}

fn valid_order() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map("[a-z0-9-]{1,20}", 1i64..=1000, 1..=100),
        "tok_[!-~]{1,60}",
    )
        .prop_map(|(lines, token)| {
            let items: Vec<Value> = lines
                .into_iter()
                .map(|(p, q)| json!({"product_id": p, "quantity": q}))
                .collect();
            json!({"items": items, "payment_token": token})
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn order_bodies_from_arbitrary_bytes_never_panic(body in mutate::junk()) {
        check(&body);
    }

    #[test]
    fn mutated_order_bodies_are_orders_or_refused_with_a_reason(
        body in mutate::mutated_json(vec![sample_body()])
    ) {
        check(&body);
    }

    #[test]
    fn idempotency_keys_of_any_text_never_panic(key in ".{0,300}") {
        if let Some(parsed) = IdempotencyKey::parse(key.as_bytes()) {
            prop_assert!(!parsed.as_str().is_empty());
            prop_assert!(parsed.as_str().chars().count() <= MAX_IDEMPOTENCY_KEY_LEN);
        }
    }

    #[test]
    fn idempotency_keys_of_any_bytes_are_kept_only_when_visible_ascii(
        key in proptest::collection::vec(any::<u8>(), 0..300)
    ) {
        let visible = !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
            && key.iter().all(|b| (0x21..=0x7e).contains(b));
        prop_assert_eq!(IdempotencyKey::parse(&key).is_some(), visible);
    }

    #[test]
    fn visible_ascii_keys_of_1_to_255_characters_are_kept_as_sent(key in "[!-~]{1,255}") {
        let parsed = IdempotencyKey::parse(key.as_bytes());
        prop_assert_eq!(parsed.as_ref().map(IdempotencyKey::as_str), Some(key.as_str()));
    }

    #[test]
    fn keys_longer_than_255_characters_are_refused(key in "[!-~]{256,400}") {
        prop_assert!(IdempotencyKey::parse(key.as_bytes()).is_none());
    }
}

proptest! {
    // Up to 100 lines of generated ids per case: fewer cases in about the same time.
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn valid_orders_round_trip_through_their_json_and_canonical_form(body in valid_order()) {
        let order = parse(body.to_string().as_bytes()).expect("a valid order");
        prop_assert_eq!(order.items.len(), body["items"].as_array().map_or(0, Vec::len));
        for (line, sent) in order.items.iter().zip(body["items"].as_array().into_iter().flatten()) {
            prop_assert_eq!(line.product_id.as_str(), sent["product_id"].as_str().unwrap_or_default());
            prop_assert_eq!(i64::from(line.quantity.get()), sent["quantity"].as_i64().unwrap_or_default());
        }
        let again = parse(order.canonical_json().as_bytes()).expect("canonical form parses");
        prop_assert_eq!(&again, &order);
        prop_assert_eq!(again.request_hash(), order.request_hash());
    }
}
