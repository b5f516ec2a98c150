-- Payments: one row per order. Only the payment token and the last four digits are kept,
-- never a card number.
CREATE TABLE IF NOT EXISTS payments.payments (
    order_id     text        PRIMARY KEY,
    payment_id   uuid,
    status       text        NOT NULL
                 CHECK (status IN ('pending', 'authorized', 'declined', 'captured', 'voided', 'cancelled')),
    amount_cents bigint,
    currency     text,
    token        text,
    last4        text,
    decline_code text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
