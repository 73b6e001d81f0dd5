DROP INDEX IF EXISTS orders_checkout_key_idx;
DELETE FROM orders WHERE status IN ('reserved', 'declined');
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('confirmed', 'cancelled'));
ALTER TABLE orders DROP COLUMN charge_id;
ALTER TABLE orders DROP COLUMN amount_cents;
ALTER TABLE products DROP COLUMN price_cents;
