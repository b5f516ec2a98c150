-- A state is reached once per order, but an order can be refunded several times: a
-- notification is unique per order, kind and `ref_id`, which is the refund id for an
-- order_refunded notification and '' for every state change.
ALTER TABLE notifications.notifications ADD COLUMN ref_id text NOT NULL DEFAULT '';
ALTER TABLE notifications.notifications DROP CONSTRAINT notifications_order_id_kind_key;
ALTER TABLE notifications.notifications ADD CONSTRAINT notifications_order_kind_ref_key
    UNIQUE (order_id, kind, ref_id);
