-- The catalog back office (`inventory-admin`) and the stock's life after the decision.
--
-- `catalog_version` is the product's version as clients see it (ETag, If-Match) and as
-- `product.updated` carries it: it grows only when the catalog entry changes, so a
-- reservation never makes an admin's If-Match stale. It starts at the stock `version`, the
-- figure `product.updated` carried until now, so the order service's copy (which keeps the
-- newest version it saw) accepts the next update.
-- `reserved` is what live orders hold (reserved, not shipped yet), kept by the code that
-- moves it, so an admin sees it without summing reservations.
ALTER TABLE inventory.products
    ADD COLUMN catalog_version     bigint      NOT NULL DEFAULT 1,
    ADD COLUMN discontinued        boolean     NOT NULL DEFAULT false,
    ADD COLUMN low_stock_threshold int         NOT NULL DEFAULT 0 CHECK (low_stock_threshold >= 0),
    ADD COLUMN reserved            int         NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    ADD COLUMN created_at          timestamptz NOT NULL DEFAULT now();

UPDATE inventory.products SET catalog_version = GREATEST(version, 1);

UPDATE inventory.products p SET reserved = held.quantity
FROM (
    SELECT line.product_id, sum(line.quantity)::int AS quantity
    FROM inventory.reservations r,
         jsonb_to_recordset(r.items) AS line(product_id text, quantity int)
    WHERE r.status = 'reserved'
    GROUP BY line.product_id
) held
WHERE held.product_id = p.product_id;

-- `shipped`: the order's units left with a carrier; `items` are what was shipped.
ALTER TABLE inventory.reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE inventory.reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('pending', 'reserved', 'rejected', 'released', 'cancelled', 'shipped'));

-- New kinds: `adjust` (an admin's or the seed's stock adjustment, any sign), `ship` (an
-- order's held units leave: `available` does not move, `quantity` says how many left),
-- `return` (a refund restocks units that were shipped), `refund_release` (a refund
-- restocks units an order still held). `quantity` is 0 for every other kind.
ALTER TABLE inventory.stock_movements DROP CONSTRAINT stock_movements_kind_check;
ALTER TABLE inventory.stock_movements ADD CONSTRAINT stock_movements_kind_check
    CHECK (kind IN ('restock', 'reserve', 'release', 'adjust', 'ship', 'return', 'refund_release'));
ALTER TABLE inventory.stock_movements ADD COLUMN quantity int NOT NULL DEFAULT 0 CHECK (quantity >= 0);

-- One row per adjustment id: the same id again answers the stored result and applies
-- nothing; with another body it is refused.
CREATE TABLE inventory.stock_adjustments (
    adjustment_id text        PRIMARY KEY,
    product_id    text        NOT NULL REFERENCES inventory.products (product_id),
    delta         int         NOT NULL,
    reason        text        NOT NULL,
    -- The product's figures right after this adjustment: the answer a retry gets.
    available     int         NOT NULL,
    reserved      int         NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A refund's restock happens once per refund id, whatever event carries it.
CREATE TABLE inventory.refund_restocks (
    refund_id  text        PRIMARY KEY,
    order_id   text        NOT NULL,
    items      jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
