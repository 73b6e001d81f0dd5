-- fences records, per resource, the highest fencing token that has written to it. A lease lock
-- (redisguard) hands each holder a strictly increasing token; pessimistic.Fence refuses a
-- write whose token is lower than the recorded one, so a holder whose lease expired while it
-- was paused (GC, VM freeze) cannot overwrite the work of the holder that came after it.
CREATE TABLE fences (
    -- The protected resource, named by the caller ("report:2026-11-22", "account:42").
    resource   text        NOT NULL,
    -- Highest token that has written. Writes with a lower token are refused.
    token      bigint      NOT NULL,
    -- When token was last recorded.
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fences_pkey PRIMARY KEY (resource),
    CONSTRAINT fences_resource_length CHECK (octet_length(resource) BETWEEN 1 AND 512),
    CONSTRAINT fences_token_positive CHECK (token > 0)
);

COMMENT ON TABLE fences IS 'Highest fencing token per resource, checked by github.com/pgonce/pgonce/pessimistic.Fence.';
