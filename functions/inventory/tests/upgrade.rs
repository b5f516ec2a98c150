//! Migration 0003 on a database that already holds stock and reservations: `reserved` is
//! filled from what live orders hold, and `catalog_version` starts at the version
//! `product.updated` last carried, so the order service's copy accepts the next update.

use shared::testing::TestEnv;
use std::borrow::Cow;

#[tokio::test]
async fn the_back_office_migration_fills_reserved_and_keeps_versions_moving_forward() {
    let env = TestEnv::new().await;
    let before = sqlx::migrate::Migrator {
        migrations: Cow::Owned(inventory::MIGRATOR.migrations[..2].to_vec()),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    env.migrate(inventory::SCHEMA, &before).await;
    sqlx::raw_sql(
        "INSERT INTO inventory.products (product_id, name, price_cents, currency, initial, available, version)
         VALUES ('a', 'A', 100, 'EUR', 10, 7, 12), ('b', 'B', 100, 'EUR', 5, 5, 1);
         INSERT INTO inventory.reservations (order_id, status, items) VALUES
           ('o1', 'reserved', '[{\"product_id\":\"a\",\"quantity\":2}]'),
           ('o2', 'reserved', '[{\"product_id\":\"a\",\"quantity\":1}]'),
           ('o3', 'released', '[{\"product_id\":\"a\",\"quantity\":4}]');",
    )
    .execute(&env.ctx.pool)
    .await
    .expect("old rows");
    env.migrate(inventory::SCHEMA, &inventory::MIGRATOR).await;
    let rows: Vec<(String, i32, i64, bool, i32)> = sqlx::query_as(
        "SELECT product_id, reserved, catalog_version, discontinued, low_stock_threshold
         FROM inventory.products ORDER BY product_id",
    )
    .fetch_all(&env.ctx.pool)
    .await
    .expect("products");
    assert_eq!(
        rows,
        vec![
            ("a".to_string(), 3, 12, false, 0),
            ("b".to_string(), 0, 1, false, 0)
        ]
    );
    // A shipment is a kind the ledger now takes, and a reservation may be shipped.
    sqlx::raw_sql(
        "INSERT INTO inventory.stock_movements (product_id, kind, order_id, delta, quantity)
         VALUES ('a', 'ship', 'o1', 0, 2);
         UPDATE inventory.reservations SET status = 'shipped' WHERE order_id = 'o1';",
    )
    .execute(&env.ctx.pool)
    .await
    .expect("new kinds");
    let bad = sqlx::query(
        "INSERT INTO inventory.stock_movements (product_id, kind, delta) VALUES ('a', 'gift', 1)",
    )
    .execute(&env.ctx.pool)
    .await;
    assert!(bad.is_err(), "an unknown kind is still refused");
}
