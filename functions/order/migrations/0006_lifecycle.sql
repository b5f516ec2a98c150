-- The order's life after the decision (issue 12): shipped and delivered orders, the
-- customer's own cancel, the shipping address and shipment, the product name at purchase,
-- and refunds with their outcome as the payment service reports it.
ALTER TABLE orders.orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders.orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED'));
ALTER TABLE orders.orders DROP CONSTRAINT orders_reason_check;
ALTER TABLE orders.orders ADD CONSTRAINT orders_reason_check
    CHECK (reason IN ('out_of_stock', 'payment_declined', 'expired', 'customer_cancelled'));

-- The address as validated at POST /orders (name, line1, line2, city, postal_code, country);
-- NULL for orders placed without one.
ALTER TABLE orders.orders ADD COLUMN shipping_address jsonb NULL;
-- The shipment, set once by POST /admin/orders/{id}/ship and .../deliver.
ALTER TABLE orders.orders ADD COLUMN carrier text NULL;
ALTER TABLE orders.orders ADD COLUMN tracking_number text NULL;
ALTER TABLE orders.orders ADD COLUMN shipped_at timestamptz NULL;
ALTER TABLE orders.orders ADD COLUMN delivered_at timestamptz NULL;
-- (`orderflow verify` checks that SHIPPED and DELIVERED orders have their shipment.)

-- The product's name when it was bought, beside its price then (a later rename or
-- discontinuation does not rewrite an order). Orders placed before this keep ''.
ALTER TABLE orders.order_items ADD COLUMN name text NOT NULL DEFAULT '';

-- Money given back: an admin's refund (kind 'admin', requested by POST
-- /admin/orders/{id}/refunds, refund_id a UUID v7), or the full refund the payment service
-- makes after a customer cancels a captured order (kind 'cancel', refund_id the id of that
-- order.cancelled event, recorded when its outcome arrives).
CREATE TABLE orders.refunds (
    refund_id      uuid        PRIMARY KEY,
    order_id       uuid        NOT NULL REFERENCES orders.orders (order_id),
    kind           text        NOT NULL CHECK (kind IN ('admin', 'cancel')),
    amount_cents   bigint      NOT NULL CHECK (amount_cents >= 0),
    currency       text        NOT NULL,
    -- [{"product_id","quantity","unit_price_cents"}]; empty for a refund by amount.
    lines          jsonb       NOT NULL DEFAULT '[]',
    restock        boolean     NOT NULL DEFAULT false,
    reason         text        NOT NULL DEFAULT '',
    -- The admin who asked; NULL for a cancel's refund.
    requested_by   uuid        NULL,
    status         text        NOT NULL CHECK (status IN ('requested', 'refunded', 'failed')),
    failure_reason text        NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_order ON orders.refunds (order_id, created_at);
