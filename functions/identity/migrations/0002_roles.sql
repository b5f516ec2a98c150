-- Roles (DESIGN.md section 9): everyone is a customer until `orderflow admin grant EMAIL`
-- (or a deploy's bootstrap) makes them an admin.
ALTER TABLE identity.users
    ADD COLUMN role text NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin'));
