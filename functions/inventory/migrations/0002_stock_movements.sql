-- Every change of `available`, written explicitly by the code that makes it, in the same
-- transaction: `orderflow verify` replays this ledger to check conservation without
-- trusting the products row. A re-seed or restock records the difference it makes, so it
-- cannot launder a leak: the ledger and the shelf would still disagree.
CREATE TABLE inventory.stock_movements (
    movement_id bigserial   PRIMARY KEY,
    product_id  text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('restock', 'reserve', 'release')),
    -- The order a reservation or release belongs to; NULL for restocks.
    order_id    text        NULL,
    delta       int         NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stock_movements_product ON inventory.stock_movements (product_id, movement_id);

-- A database from before this ledger opens it with what it holds: the stock on the shelf
-- plus what orders hold, then those orders' reservations, so that replaying it gives
-- today's figures.
INSERT INTO inventory.stock_movements (product_id, kind, delta)
SELECT p.product_id, 'restock', p.available + COALESCE(held.quantity, 0)
FROM inventory.products p
LEFT JOIN (
    SELECT line.product_id, sum(line.quantity)::int AS quantity
    FROM inventory.reservations r,
         jsonb_to_recordset(r.items) AS line(product_id text, quantity int)
    WHERE r.status = 'reserved'
    GROUP BY line.product_id
) held ON held.product_id = p.product_id;

INSERT INTO inventory.stock_movements (product_id, kind, order_id, delta)
SELECT line.product_id, 'reserve', r.order_id, -line.quantity
FROM inventory.reservations r,
     jsonb_to_recordset(r.items) AS line(product_id text, quantity int)
WHERE r.status = 'reserved';
