-- Back to the six CHECK constraints of 0001 and the nine of 0003 (validated: this scans each table).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['dedupe_keys', 'dedupe_keys_g0', 'dedupe_keys_g1', 'dedupe_keys_g2'] LOOP
        EXECUTE format('ALTER TABLE %1$I
            DROP CONSTRAINT IF EXISTS dedupe_keys_valid,
            ADD CONSTRAINT dedupe_keys_scope_length CHECK (octet_length(scope) BETWEEN 1 AND 512),
            ADD CONSTRAINT dedupe_keys_key_length CHECK (octet_length(key) BETWEEN 1 AND 255),
            ADD CONSTRAINT dedupe_keys_fingerprint_length CHECK (octet_length(fingerprint) <= 64),
            ADD CONSTRAINT dedupe_keys_status_range CHECK (status BETWEEN 0 AND 999),
            ADD CONSTRAINT dedupe_keys_headers_object CHECK (headers IS NULL OR jsonb_typeof(headers) = ''object''),
            ADD CONSTRAINT dedupe_keys_expiry CHECK (expires_at > created_at)', t);
    END LOOP;
END
$$;
ALTER TABLE flow_requests
    DROP CONSTRAINT IF EXISTS flow_requests_valid,
    ADD CONSTRAINT flow_requests_scope_length CHECK (octet_length(scope) BETWEEN 1 AND 512),
    ADD CONSTRAINT flow_requests_key_length CHECK (octet_length(key) BETWEEN 1 AND 255),
    ADD CONSTRAINT flow_requests_fingerprint_length CHECK (octet_length(fingerprint) <= 64),
    ADD CONSTRAINT flow_requests_seed_length CHECK (octet_length(seed) = 32),
    ADD CONSTRAINT flow_requests_state CHECK (state IN ('running', 'finished', 'reconcile')),
    ADD CONSTRAINT flow_requests_finished_has_response CHECK (state <> 'finished' OR status IS NOT NULL),
    ADD CONSTRAINT flow_requests_status_range CHECK (status BETWEEN 0 AND 999),
    ADD CONSTRAINT flow_requests_headers_object CHECK (headers IS NULL OR jsonb_typeof(headers) = 'object'),
    ADD CONSTRAINT flow_requests_expiry CHECK (expires_at >= redrive_until);
DROP FUNCTION IF EXISTS flow_requests_valid(text, text, bytea, bytea, text, integer, jsonb, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS dedupe_keys_valid(text, text, bytea, integer, jsonb, timestamptz, timestamptz);
