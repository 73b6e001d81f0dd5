-- Paid checkout (POST /orders as a phased request with a payment provider): a price per
-- unit, the amount charged, the provider's charge id, and two more order states. An order is
-- inserted 'reserved' (stock taken) before the charge, then becomes 'confirmed' (charged) or
-- 'declined' (card refused, stock given back).
ALTER TABLE products ADD COLUMN price_cents bigint NOT NULL DEFAULT 1250 CHECK (price_cents > 0);

ALTER TABLE orders ADD COLUMN amount_cents bigint;
ALTER TABLE orders ADD COLUMN charge_id text;
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('reserved', 'confirmed', 'declined', 'cancelled'));
-- One order per idempotency key in the paid checkout: the reserve step's insert is its own
-- guard if a step ever ran twice.
CREATE UNIQUE INDEX orders_checkout_key_idx ON orders (idempotency_key) WHERE amount_cents IS NOT NULL;
