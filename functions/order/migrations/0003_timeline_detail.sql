-- What each event said, in a few words (`failed: card_declined`, `reason payment_declined`),
-- so a timeline reads without decoding payloads.
ALTER TABLE orders.timeline ADD COLUMN detail text NOT NULL DEFAULT '';
