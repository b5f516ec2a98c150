-- Admission control counts the orders decided in the last seconds on every POST /orders
-- (once a second per instance): an index on finalized_at keeps that a short range scan.
CREATE INDEX IF NOT EXISTS orders_finalized ON orders.orders (finalized_at)
    WHERE finalized_at IS NOT NULL;
