-- products: the catalogue, with a version column for optimistic concurrency control.
CREATE TABLE products (
    -- Stock-keeping unit: the product's id.
    sku        text        PRIMARY KEY,
    -- Display name.
    name       text        NOT NULL,
    -- Units available; never negative.
    stock      integer     NOT NULL CHECK (stock >= 0),
    -- Incremented by every update (optimistic.Update checks it: WHERE version = $n).
    version    bigint      NOT NULL DEFAULT 1,
    -- When the row last changed.
    updated_at timestamptz NOT NULL DEFAULT now()
);
