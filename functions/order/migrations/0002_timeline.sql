-- Every event of an order as `order-timeline` saw it on the bus, whichever service
-- published it: what GET /orders/{id} shows (the order service reads only its own schema),
-- and what `orderflow timeline` joins with every service's inbox.
CREATE TABLE orders.timeline (
    event_id     uuid        PRIMARY KEY,
    order_id     text        NOT NULL,
    event_type   text        NOT NULL,
    -- Empty for the first event of a chain (order.created).
    causation_id text        NOT NULL DEFAULT '',
    traceparent  text        NOT NULL DEFAULT '',
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX timeline_order ON orders.timeline (order_id, occurred_at);

-- The trace the order's events continue, so that a decision with no causing event (the
-- expiry schedule's cancel) still belongs to the order's trace.
ALTER TABLE orders.orders ADD COLUMN traceparent text NOT NULL DEFAULT '';
