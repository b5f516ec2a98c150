-- The payments ledger: one row per gateway call (authorize, capture, void, refund), keyed
-- by the idempotency key the call carried. The key is derived from the event that caused
-- the call, so a redelivered event repeats the same call (the gateway answers it from its
-- own record) instead of making a second one; `orderflow verify` compares this ledger with
-- the gateway's record and with the orders.
CREATE TABLE payments.ledger (
    idempotency_key text        PRIMARY KEY,
    order_id        text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('authorize', 'capture', 'void', 'refund')),
    outcome         text        NOT NULL CHECK (outcome IN ('approved', 'declined', 'succeeded')),
    amount_cents    bigint      NOT NULL,
    currency        text        NOT NULL,
    -- The gateway's payment id; NULL for a declined authorization.
    gateway_ref     uuid        NULL,
    -- The event that caused the call.
    caused_by       text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ledger_order ON payments.ledger (order_id);

-- Payments from before the ledger: what their status says happened.
INSERT INTO payments.ledger (idempotency_key, order_id, kind, outcome, amount_cents, currency, gateway_ref, caused_by)
SELECT 'migrated:authorize:' || order_id, order_id, 'authorize',
       CASE WHEN status = 'declined' THEN 'declined' ELSE 'approved' END,
       COALESCE(amount_cents, 0), COALESCE(currency, ''), payment_id, 'migration'
FROM payments.payments WHERE status IN ('authorized', 'declined', 'captured', 'voided');
INSERT INTO payments.ledger (idempotency_key, order_id, kind, outcome, amount_cents, currency, gateway_ref, caused_by)
SELECT 'migrated:' || CASE WHEN status = 'captured' THEN 'capture' ELSE 'void' END || ':' || order_id,
       order_id, CASE WHEN status = 'captured' THEN 'capture' ELSE 'void' END, 'succeeded',
       COALESCE(amount_cents, 0), COALESCE(currency, ''), payment_id, 'migration'
FROM payments.payments WHERE status IN ('captured', 'voided');

-- The simulated gateway's own record, as a real provider keeps one on its side: written
-- outside the consumer's transaction, so a call whose transaction rolled back still shows.
-- A repeated idempotency key returns the first answer and only counts the repeat.
CREATE SCHEMA IF NOT EXISTS gateway_sim;
CREATE TABLE IF NOT EXISTS gateway_sim.calls (
    idempotency_key text        PRIMARY KEY,
    kind            text        NOT NULL,
    order_id        text        NOT NULL,
    amount_cents    bigint      NOT NULL,
    currency        text        NOT NULL,
    payment_id      uuid        NULL,
    outcome         text        NOT NULL,
    decline_code    text        NULL,
    last4           text        NULL,
    calls           int         NOT NULL DEFAULT 1,
    first_at        timestamptz NOT NULL DEFAULT now(),
    last_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS calls_order ON gateway_sim.calls (order_id);
