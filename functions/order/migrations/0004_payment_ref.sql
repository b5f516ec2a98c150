-- The order service keeps no payment token: it only passes the token on, sealed for the
-- payment service (shared::payment_token). What it keeps is the reference (`tok_...visa`),
-- and tokens stored before this migration are cut down to theirs.
ALTER TABLE orders.orders RENAME COLUMN payment_token TO payment_ref;
UPDATE orders.orders SET payment_ref = 'tok_...' || right(substr(payment_ref, 5), 4)
WHERE payment_ref NOT LIKE 'tok\_...%';
