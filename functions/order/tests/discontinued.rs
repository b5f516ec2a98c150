//! `POST /orders` refuses a product the catalog discontinued (422 `discontinued_product`),
//! as the order service's catalog copy learns it from `product.updated`.

mod common;

use common::Harness;
use shared::Envelope;
use shared::contracts::{Payload, ProductUpdated};

fn update(id: &str, version: u64, discontinued: bool) -> Envelope {
    Envelope::new(
        Payload::ProductUpdated(ProductUpdated {
            product_id: id.into(),
            name: format!("Product {id}"),
            price_cents: 1999,
            currency: "EUR".into(),
            version,
            discontinued,
            low_stock_threshold: 0,
        }),
        None,
    )
}

const BODY: &str = r#"{"items":[{"product_id":"sku-1","quantity":1},{"product_id":"sku-2","quantity":1}],"payment_token":"tok_visa"}"#;

#[tokio::test]
async fn an_order_for_a_discontinued_product_is_422_and_creates_nothing() {
    let h = Harness::seeded().await;
    let user = h.user().await;
    let report = h
        .deliver(&h.catalog, "order-catalog", &[update("sku-2", 2, true)])
        .await;
    assert_eq!(report["processed"], 1, "{report}");
    let (status, answer) = h.post_order(Some(&user.token), BODY, None).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "discontinued_product");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("sku-2") && !message.contains("sku-1"),
        "{message}"
    );
    assert!(h.env.published().is_empty(), "no order.created");
    assert!(
        order::orders(&h.env.ctx.pool)
            .await
            .expect("orders")
            .is_empty()
    );

    // An older event (say, redelivered late) does not bring it back; a newer one does.
    h.deliver(&h.catalog, "order-catalog", &[update("sku-2", 1, false)])
        .await;
    let (status, _) = h.post_order(Some(&user.token), BODY, None).await;
    assert_eq!(status, 422, "a stale update is ignored");
    h.deliver(&h.catalog, "order-catalog", &[update("sku-2", 3, false)])
        .await;
    let (status, answer) = h.post_order(Some(&user.token), BODY, None).await;
    assert_eq!(status, 202, "{answer}");
}
