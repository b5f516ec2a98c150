//! Property tests of the lifecycle routes at the edge: the ship and refund bodies and the
//! shipping address, fed arbitrary bytes and mutations of valid bodies, never panic and are
//! either valid or refused with a reason; and whatever refunds an admin asks for, in any
//! order, the accepted ones never sum above the order's total nor refund a unit not bought.

#[path = "../../../shared/tests/support/mutate.rs"]
mod mutate;

use order::domain::fulfilment::{ShipRequest, Shipment};
use order::domain::refund::{self, Prior, Purchased, RefundBy, RefundRequest, ValidRefund};
use order::domain::request::{OrderRequest, ValidOrder};
use proptest::prelude::*;
use serde_json::{Value, json};

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut req = shared::http::request("POST", "/x", "POST /x");
    req.body = Some(String::from_utf8_lossy(bytes).into_owned());
    shared::http::json_body(&req).map_err(|e| {
        assert_eq!(e.status, 400);
        e.message
    })
}

fn check_ship(bytes: &[u8]) {
    match body::<ShipRequest>(bytes).and_then(|r| Shipment::try_from(r).map_err(|e| e.to_string()))
    {
        Ok(s) => {
            assert!(!s.carrier.is_empty() && s.carrier.chars().count() <= 64);
            assert!(!s.tracking_number.is_empty() && s.tracking_number.len() <= 64);
        }
        Err(message) => assert!(!message.trim().is_empty()),
    }
}

fn check_refund(bytes: &[u8]) {
    match body::<RefundRequest>(bytes)
        .and_then(|r| ValidRefund::try_from(r).map_err(|e| e.to_string()))
    {
        Ok(r) => {
            match &r.by {
                RefundBy::Amount(a) => assert!(*a > 0 && !r.restock),
                RefundBy::Lines(l) => assert!((1..=100).contains(&l.len())),
            }
            assert_eq!(r.request_hash().len(), 64);
        }
        Err(message) => assert!(!message.trim().is_empty()),
    }
}

fn check_order(bytes: &[u8]) {
    match body::<OrderRequest>(bytes)
        .and_then(|r| ValidOrder::try_from(r).map_err(|e| e.to_string()))
    {
        Ok(o) => {
            if let Some(a) = &o.shipping_address {
                assert!(order::domain::address::valid_country(&a.country));
                assert!(!a.city.trim().is_empty() && a.city == a.city.trim());
            }
        }
        Err(message) => assert!(!message.trim().is_empty()),
    }
}

fn ship_sample() -> Value {
    json!({"carrier": "DHL", "tracking_number": "JD014600003SE"})
}

fn refund_samples() -> Vec<Value> {
    vec![
        json!({"amount_cents": 500, "reason": "late"}),
        json!({"lines": [{"product_id": "sku-1", "quantity": 1}], "restock": true}),
    ]
}

fn order_with_address() -> Value {
    json!({"items": [{"product_id": "sku-1", "quantity": 1}], "payment_token": "tok_visa",
           "shipping_address": {"name": "Ada", "line1": "1 Main St", "line2": "Flat 2", "city": "Paris", "postal_code": "75001", "country": "FR"}})
}

fn bought() -> Vec<Purchased> {
    vec![
        Purchased {
            product_id: "a".into(),
            quantity: 3,
            unit_price_cents: 1000,
        },
        Purchased {
            product_id: "b".into(),
            quantity: 1,
            unit_price_cents: 250,
        },
    ]
}

fn refund_request() -> impl Strategy<Value = ValidRefund> {
    prop_oneof![
        (1i64..=4000).prop_map(|a| json!({"amount_cents": a})),
        prop::collection::vec((prop_oneof![Just("a"), Just("b"), Just("c")], 1i64..=4), 1..=3)
            .prop_map(|lines| json!({"lines": lines.into_iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect::<Vec<_>>()})),
    ]
    .prop_filter_map("valid", |v| {
        ValidRefund::try_from(serde_json::from_value::<RefundRequest>(v).ok()?).ok()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ship_bodies_from_arbitrary_bytes_or_mutations_never_panic(
        junk in mutate::junk(),
        mutated in mutate::mutated_json(vec![ship_sample()]),
    ) {
        check_ship(&junk);
        check_ship(&mutated);
    }

    #[test]
    fn refund_bodies_from_arbitrary_bytes_or_mutations_never_panic(
        junk in mutate::junk(),
        mutated in mutate::mutated_json(refund_samples()),
    ) {
        check_refund(&junk);
        check_refund(&mutated);
    }

    #[test]
    fn orders_with_mutated_addresses_are_valid_or_refused_with_a_reason(
        mutated in mutate::mutated_json(vec![order_with_address()]),
    ) {
        check_order(&mutated);
    }

    #[test]
    fn accepted_refunds_never_exceed_the_total_or_the_units_bought(
        asks in prop::collection::vec(refund_request(), 1..=12),
    ) {
        let lines = bought();
        let total: i64 = lines.iter().map(|l| l.quantity * l.unit_price_cents).sum();
        let mut prior: Vec<Prior> = Vec::new();
        for ask in &asks {
            if let Ok(p) = refund::plan(total, &lines, &prior, ask) {
                prop_assert!(p.amount_cents > 0);
                prior.push(Prior {
                    amount_cents: p.amount_cents,
                    lines: p.lines.iter().map(|l| (l.product_id.clone(), l.quantity)).collect(),
                });
            }
        }
        prop_assert!(prior.iter().map(|p| p.amount_cents).sum::<i64>() <= total);
        for line in &lines {
            let refunded: i64 = prior
                .iter()
                .flat_map(|p| &p.lines)
                .filter(|(id, _)| *id == line.product_id)
                .map(|(_, q)| q)
                .sum();
            prop_assert!(refunded <= line.quantity, "{refunded} of {}", line.product_id);
        }
    }
}
