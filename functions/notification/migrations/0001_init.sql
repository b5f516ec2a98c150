-- One customer notification per order and kind: the unique key is what makes duplicate and
-- re-published events harmless.
CREATE TABLE notifications.notifications (
    notification_id uuid        PRIMARY KEY,
    order_id        text        NOT NULL,
    kind            text        NOT NULL,
    user_id         text        NOT NULL DEFAULT '',
    recipient       text        NOT NULL,
    channel         text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        int         NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (order_id, kind)
);

CREATE INDEX notifications_undelivered ON notifications.notifications (created_at)
    WHERE status <> 'delivered';
