-- A discontinued product stays in the catalog copy (orders placed before still name it),
-- and `POST /orders` refuses it (422 discontinued_product). Fed by product.updated.
ALTER TABLE orders.catalog ADD COLUMN discontinued boolean NOT NULL DEFAULT false;
