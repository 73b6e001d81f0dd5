-- orders: one row per order the service accepted. Orders are created only through
-- POST /orders, inside the idempotency transaction, so each key creates at most one order.
CREATE TABLE orders (
    -- Order number, returned as "id" and in the Location header.
    id              bigserial   PRIMARY KEY,
    -- Who ordered (opaque id from the caller).
    customer_id     text        NOT NULL CHECK (octet_length(customer_id) BETWEEN 1 AND 128),
    -- What was ordered.
    sku             text        NOT NULL REFERENCES products (sku),
    -- How many units; taken from products.stock in the same transaction.
    quantity        integer     NOT NULL CHECK (quantity > 0),
    -- confirmed, or cancelled later.
    status          text        NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'cancelled')),
    -- The Idempotency-Key the order was created with, for audits: joins to dedupe_keys.key.
    idempotency_key text        NOT NULL,
    -- When the order was accepted.
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- The nightly report reads one day of orders.
CREATE INDEX orders_created_at_idx ON orders (created_at);
