-- Products (the catalog, owned here) with their stock, and one reservation per order.
-- `version` grows with every change of a product row; the Redis stock cache keys its
-- entries on it so that a stale write can never overwrite a newer figure.
CREATE TABLE IF NOT EXISTS inventory.products (
    product_id  text        PRIMARY KEY,
    name        text        NOT NULL,
    price_cents bigint      NOT NULL CHECK (price_cents >= 0),
    currency    text        NOT NULL,
    initial     int         NOT NULL CHECK (initial >= 0),
    available   int         NOT NULL CHECK (available >= 0),
    version     bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS inventory.reservations (
    order_id   text        PRIMARY KEY,
    status     text        NOT NULL
               CHECK (status IN ('pending', 'reserved', 'rejected', 'released', 'cancelled')),
    items      jsonb       NOT NULL DEFAULT '[]'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
