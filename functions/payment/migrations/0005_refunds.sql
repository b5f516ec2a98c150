-- Refunds (DESIGN.md section 9): what has been given back of a captured payment, and the
-- gateway's own id of each refund. `refunded_cents` only grows, under the payment row's
-- lock, so captured - refunded is what a further refund may still give back.
ALTER TABLE payments.payments ADD COLUMN refunded_cents bigint NOT NULL DEFAULT 0
    CHECK (refunded_cents >= 0);

-- The gateway's id of a refund (`re_...`): what a dispute or a reconciliation names.
ALTER TABLE payments.ledger ADD COLUMN gateway_refund_id text NULL;

-- The simulated gateway's record of the same: a repeated key answers the first refund id.
ALTER TABLE gateway_sim.calls ADD COLUMN refund_id text NULL;
