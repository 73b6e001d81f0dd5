-- dedupe_keys holds one row per claimed idempotency key. The row is inserted in the same
-- transaction as the business write it guards, so the key and the effect commit or vanish
-- together. Limits here are also enforced in Go (dedupe.MaxScopeLen, dedupe.MaxKeyLen,
-- dedupe.MaxFingerprintLen), so bad input is refused before it reaches the database.
CREATE TABLE dedupe_keys (
    -- Namespace of the key: an operation ("orders.create"), a route ("POST /orders") and/or
    -- a tenant. The same key in two scopes is two different requests.
    scope        text        NOT NULL,
    -- The client's idempotency key, unique within its scope.
    key          text        NOT NULL,
    -- Hash of the request the key was first used with (dedupe.Fingerprint: SHA-256 of method,
    -- path and canonical body). A later request with the same key but another fingerprint is
    -- refused. Empty when the caller does not fingerprint.
    fingerprint  bytea       NOT NULL DEFAULT '\x'::bytea,
    -- Stored response: status code (HTTP status, or any small integer the caller uses). NULL
    -- only inside the claiming transaction, between the claim and the store; no other
    -- transaction ever sees a NULL here.
    status       integer,
    -- Stored response: selected headers as a JSON object of string arrays
    -- ({"Content-Type": ["application/json"]}); NULL when there are none.
    headers      jsonb,
    -- Stored response: body bytes, replayed byte for byte.
    body         bytea,
    -- When the key was claimed (transaction start time of the claiming transaction).
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- When the response was stored; NULL while the claim is open.
    completed_at timestamptz,
    -- After this instant the key counts as new again: the next request with it re-claims the
    -- row atomically, and dedupe's Purge may delete it.
    expires_at   timestamptz NOT NULL,
    CONSTRAINT dedupe_keys_pkey PRIMARY KEY (scope, key),
    CONSTRAINT dedupe_keys_scope_length CHECK (octet_length(scope) BETWEEN 1 AND 512),
    CONSTRAINT dedupe_keys_key_length CHECK (octet_length(key) BETWEEN 1 AND 255),
    CONSTRAINT dedupe_keys_fingerprint_length CHECK (octet_length(fingerprint) <= 64),
    CONSTRAINT dedupe_keys_status_range CHECK (status BETWEEN 0 AND 999),
    CONSTRAINT dedupe_keys_headers_object CHECK (headers IS NULL OR jsonb_typeof(headers) = 'object'),
    CONSTRAINT dedupe_keys_expiry CHECK (expires_at > created_at)
);

-- Purge walks expired rows oldest first, a bounded batch at a time; this index makes each
-- batch an index range scan instead of a sequential scan of the whole table.
CREATE INDEX dedupe_keys_expires_at_idx ON dedupe_keys (expires_at);

COMMENT ON TABLE dedupe_keys IS 'Idempotency keys claimed by github.com/pgonce/pgonce/dedupe, with the response to replay.';
