-- Users of the shop. Emails are unique without regard to case; the address is kept as the
-- user typed it (trimmed), and looked up by lower(email).
CREATE TABLE identity.users (
    user_id       uuid        PRIMARY KEY,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_lower ON identity.users (lower(email));
