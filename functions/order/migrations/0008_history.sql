-- `GET /orders` pages a customer's orders newest first by order id (UUID v7, so creation
-- order); this index answers each page with one range scan, whatever the filter.
CREATE INDEX IF NOT EXISTS orders_user_order ON orders.orders (user_id, order_id DESC);
CREATE INDEX IF NOT EXISTS orders_user_status_order ON orders.orders (user_id, status, order_id DESC);
