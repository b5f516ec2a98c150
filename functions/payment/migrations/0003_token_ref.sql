-- After the authorization the payment service needs no token (capture, void and refund go by
-- the gateway's payment id), so it keeps only the reference (`tok_...visa`); tokens stored
-- before this migration are cut down to theirs.
ALTER TABLE payments.payments RENAME COLUMN token TO token_ref;
UPDATE payments.payments SET token_ref = 'tok_...' || right(substr(token_ref, 5), 4)
WHERE token_ref IS NOT NULL AND token_ref NOT LIKE 'tok\_...%';
