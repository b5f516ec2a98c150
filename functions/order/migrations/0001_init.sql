-- The order service's tables. Prices live in `catalog`, a copy fed by product.updated
-- events (the order service never reads inventory's tables).

CREATE TABLE orders.catalog (
    product_id  text   PRIMARY KEY,
    name        text   NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency    text   NOT NULL,
    version     bigint NOT NULL
);

CREATE TABLE orders.orders (
    order_id       uuid        PRIMARY KEY,
    user_id        uuid        NOT NULL,
    customer_email text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    reason         text        NULL CHECK (reason IN ('out_of_stock', 'payment_declined', 'expired')),
    total_cents    bigint      NOT NULL,
    currency       text        NOT NULL,
    stock_result   text        NULL CHECK (stock_result IN ('reserved', 'rejected')),
    payment_result text        NULL CHECK (payment_result IN ('success', 'failed')),
    payment_token  text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deadline_at    timestamptz NOT NULL,
    finalized_at   timestamptz NULL
);

-- The expiry schedule scans PENDING orders by deadline.
CREATE INDEX orders_status_deadline ON orders.orders (status, deadline_at);
CREATE INDEX orders_user ON orders.orders (user_id);

CREATE TABLE orders.order_items (
    order_id         uuid   NOT NULL REFERENCES orders.orders (order_id),
    line             int    NOT NULL,
    product_id       text   NOT NULL,
    quantity         int    NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (order_id, line)
);

CREATE TABLE orders.idempotency (
    user_id      uuid        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status_code  int         NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- order-get's timeline reads the inbox by order.
CREATE INDEX IF NOT EXISTS inbox_order ON orders.inbox (order_id);
CREATE INDEX IF NOT EXISTS outbox_correlation ON orders.outbox (correlation_id);
