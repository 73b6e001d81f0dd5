-- notifications: the receiver's effect, one row per notification accepted by
-- POST /notifications inside the idempotency transaction on the incoming Idempotency-Key.
-- There is deliberately NO unique constraint on order_ref: a duplicate effect must show up
-- as two rows, not be hidden by the schema.
CREATE TABLE notifications (
    -- "ntf_" and 24 hex digits.
    id          text        PRIMARY KEY,
    -- The Idempotency-Key the sender delivered it with.
    key         text        NOT NULL,
    -- The order the notification is about (the body's "order_ref").
    order_ref   text        NOT NULL,
    -- The body as received (JSON).
    body        jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_order_ref_idx ON notifications (order_ref);

-- notification_arrivals: every HTTP arrival at POST /notifications, written outside the
-- idempotency transaction (before it), whatever became of the request: deliveries
-- attempted, to compare with the effects above.
CREATE TABLE notification_arrivals (
    id          bigserial   PRIMARY KEY,
    -- The Idempotency-Key header as sent ("" when absent).
    key         text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
