-- The provider's own id of an authorization (a PaymentIntent id, `pi_...`), which capture,
-- void and refund name at the provider. The simulated gateway's is the payment id itself.
ALTER TABLE payments.payments ADD COLUMN provider_ref text NULL;
UPDATE payments.payments SET provider_ref = payment_id::text WHERE payment_id IS NOT NULL;
