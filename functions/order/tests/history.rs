//! `GET /orders`: a customer's history, newest first, paged by an opaque cursor, against
//! real Postgres and Redis.

mod common;

use aws_lambda_events::http::{HeaderName, HeaderValue};
use common::{Harness, User, call, payment, reserved};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

async fn list(h: &Harness, token: Option<&str>, query: &[(&str, &str)]) -> (u16, Value) {
    let mut req = shared::http::request("GET", "/orders", "GET /orders");
    let q: HashMap<String, String> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    req.query_string_parameters = q.into();
    if let Some(token) = token {
        req.headers.insert(
            HeaderName::from_static("authorization"),
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
    }
    call(&h.get, req).await
}

fn ids(page: &Value) -> Vec<Uuid> {
    page["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| Uuid::parse_str(o["order_id"].as_str().expect("order_id")).expect("uuid"))
        .collect()
}

/// Every page of the user's list under `query`, following `next_cursor` to the end.
async fn all_pages(h: &Harness, user: &User, query: &[(&str, &str)]) -> Vec<Vec<Uuid>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.to_vec();
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let (status, page) = list(h, Some(&user.token), &q).await;
        assert_eq!(status, 200, "{page}");
        pages.push(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn pages_hold_the_callers_orders_newest_first_with_lines_and_end_without_a_cursor() {
    let h = Harness::seeded().await;
    let (ada, bob) = (h.user().await, h.user().await);
    let mut placed = Vec::new();
    for _ in 0..7 {
        placed.push(h.place(&ada, "tok_visa").await.0);
    }
    h.place(&bob, "tok_visa").await;

    let pages = all_pages(&h, &ada, &[("limit", "3")]).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 1],
        "{pages:?}"
    );
    let seen: Vec<Uuid> = pages.concat();
    placed.reverse();
    assert_eq!(
        seen, placed,
        "newest first, every order once, none of bob's"
    );

    let (_, first) = list(&h, Some(&ada.token), &[("limit", "1")]).await;
    let order = &first["orders"][0];
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["total_cents"], 3998);
    assert_eq!(order["items"][0]["product_id"], "sku-1");
    assert!(
        order["items"][0]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "the name at purchase: {order}"
    );
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["items"][0]["unit_price_cents"], 1999);

    let stranger = h.user().await;
    let (status, empty) = list(&h, Some(&stranger.token), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(empty["orders"], serde_json::json!([]));
    assert_eq!(empty["next_cursor"], Value::Null);
}

#[tokio::test]
async fn paging_while_orders_are_inserted_skips_nothing_and_repeats_nothing() {
    let h = std::sync::Arc::new(Harness::seeded().await);
    let ada = std::sync::Arc::new(h.user().await);
    let mut before = BTreeSet::new();
    for _ in 0..12 {
        before.insert(h.place(&ada, "tok_visa").await.0);
    }
    // Another of ada's sessions keeps ordering while she pages.
    let writer = {
        let (h, ada) = (h.clone(), ada.clone());
        tokio::spawn(async move {
            let mut during = Vec::new();
            for _ in 0..10 {
                during.push(h.place(&ada, "tok_visa").await.0);
                tokio::task::yield_now().await;
            }
            during
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("limit", "2")];
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let (status, page) = list(&h, Some(&ada.token), &q).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    let during: BTreeSet<Uuid> = writer.await.expect("writer").into_iter().collect();
    let unique: BTreeSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "an order appeared twice: {seen:?}"
    );
    assert!(
        before.is_subset(&unique),
        "orders placed before paging began were skipped: {:?}",
        before.difference(&unique).collect::<Vec<_>>()
    );
    assert!(unique.difference(&before).all(|id| during.contains(id)));
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first across pages");
}

#[tokio::test]
async fn a_status_filter_lists_only_that_status_and_its_cursor_pages_only_that_filter() {
    let h = Harness::seeded().await;
    let ada = h.user().await;
    let mut confirmed = Vec::new();
    for i in 0..5 {
        let (id, created) = h.place(&ada, "tok_visa").await;
        if i % 2 == 0 {
            h.to_saga(&[reserved(&created), payment(&created, true)])
                .await;
            confirmed.push(id);
        }
    }
    confirmed.reverse();
    let pages = all_pages(&h, &ada, &[("status", "CONFIRMED"), ("limit", "2")]).await;
    assert_eq!(pages.concat(), confirmed);
    let pending = all_pages(&h, &ada, &[("status", "PENDING")]).await.concat();
    assert_eq!(pending.len(), 2);

    let (_, page) = list(
        &h,
        Some(&ada.token),
        &[("status", "CONFIRMED"), ("limit", "1")],
    )
    .await;
    let cursor = page["next_cursor"].as_str().expect("more confirmed orders");
    let (status, body) = list(&h, Some(&ada.token), &[("cursor", cursor)]).await;
    assert_eq!(
        status, 400,
        "a filtered cursor on the unfiltered list: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("another status")
    );
}

#[tokio::test]
async fn no_session_is_401_and_bad_parameters_are_400_with_the_reason() {
    let h = Harness::seeded().await;
    let ada = h.user().await;
    let (status, body) = list(&h, None, &[]).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = list(&h, Some("ofs_not-a-session"), &[]).await;
    assert_eq!(status, 401, "{body}");
    for (query, word) in [
        (("limit", "0"), "limit"),
        (("limit", "500"), "limit"),
        (("status", "confirmed"), "status"),
        (("cursor", "not-a-cursor"), "cursor"),
    ] {
        let (status, body) = list(&h, Some(&ada.token), &[query]).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("message")
                .contains(word),
            "{query:?}: {body}"
        );
    }
}
