-- Back to 0006: its two lock-first functions as 0006 created them (CREATE OR REPLACE drops
-- the plan_cache_mode setting with the old definition), and the setting off the other two.
CREATE OR REPLACE FUNCTION dedupe_gen_lookup(p_scope text, p_key text, p_ttl_micros bigint)
RETURNS TABLE (locked boolean, found boolean, fingerprint bytea, status integer, headers jsonb, body bytea, expired boolean, life_micros bigint)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    g dedupe_generations%ROWTYPE;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'pgonce: the generations layout of dedupe needs READ COMMITTED, not %',
            current_setting('transaction_isolation') USING ERRCODE = 'feature_not_supported';
    END IF;
    SELECT * INTO g FROM dedupe_generations;
    IF p_ttl_micros > extract(epoch FROM g.max_ttl) * 1000000 THEN
        RAISE EXCEPTION 'pgonce: TTL of % microseconds exceeds the generations layout''s max_ttl %',
            p_ttl_micros, g.max_ttl USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Static table names per branch, as in dedupe_gen_claim: cached plans, and only the
    -- executed branch locks its tables.
    CASE g.current % 3
    WHEN 0 THEN
        IF EXISTS (SELECT FROM dedupe_keys_g0 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp())
                OR EXISTS (SELECT FROM dedupe_keys_g2 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()) THEN
            locked := false;
        ELSE
            PERFORM pg_advisory_xact_lock(1886351214, hashtext(p_scope || E'\n' || p_key));
            locked := true;
        END IF;
    WHEN 1 THEN
        IF EXISTS (SELECT FROM dedupe_keys_g1 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp())
                OR EXISTS (SELECT FROM dedupe_keys_g0 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()) THEN
            locked := false;
        ELSE
            PERFORM pg_advisory_xact_lock(1886351214, hashtext(p_scope || E'\n' || p_key));
            locked := true;
        END IF;
    ELSE
        IF EXISTS (SELECT FROM dedupe_keys_g2 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp())
                OR EXISTS (SELECT FROM dedupe_keys_g1 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()) THEN
            locked := false;
        ELSE
            PERFORM pg_advisory_xact_lock(1886351214, hashtext(p_scope || E'\n' || p_key));
            locked := true;
        END IF;
    END CASE;
    SELECT * INTO g FROM dedupe_generations;
    CASE g.current % 3
    WHEN 0 THEN
        RETURN QUERY SELECT locked, true, k.fingerprint, k.status, k.headers, k.body, k.expires_at <= clock_timestamp(),
            (extract(epoch FROM k.expires_at - clock_timestamp()) * 1000000)::bigint
        FROM (SELECT 1 AS o, k.* FROM dedupe_keys_g0 k WHERE k.scope = p_scope AND k.key = p_key
              UNION ALL
              SELECT 2, k.* FROM dedupe_keys_g2 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()) k
        ORDER BY k.o LIMIT 1;
    WHEN 1 THEN
        RETURN QUERY SELECT locked, true, k.fingerprint, k.status, k.headers, k.body, k.expires_at <= clock_timestamp(),
            (extract(epoch FROM k.expires_at - clock_timestamp()) * 1000000)::bigint
        FROM (SELECT 1 AS o, k.* FROM dedupe_keys_g1 k WHERE k.scope = p_scope AND k.key = p_key
              UNION ALL
              SELECT 2, k.* FROM dedupe_keys_g0 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()) k
        ORDER BY k.o LIMIT 1;
    ELSE
        RETURN QUERY SELECT locked, true, k.fingerprint, k.status, k.headers, k.body, k.expires_at <= clock_timestamp(),
            (extract(epoch FROM k.expires_at - clock_timestamp()) * 1000000)::bigint
        FROM (SELECT 1 AS o, k.* FROM dedupe_keys_g2 k WHERE k.scope = p_scope AND k.key = p_key
              UNION ALL
              SELECT 2, k.* FROM dedupe_keys_g1 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()) k
        ORDER BY k.o LIMIT 1;
    END CASE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT locked, false, NULL::bytea, NULL::integer, NULL::jsonb, NULL::bytea, false, 0::bigint;
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION dedupe_gen_insert(p_scope text, p_key text, p_fingerprint bytea, p_status integer,
    p_headers jsonb, p_body bytea, p_ttl_micros bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    g bigint;
    e timestamptz;
BEGIN
    SELECT current INTO g FROM dedupe_generations;
    CASE g % 3
    WHEN 0 THEN
        INSERT INTO dedupe_keys_g0 AS k (scope, key, fingerprint, status, headers, body, completed_at, expires_at)
        VALUES (p_scope, p_key, p_fingerprint, p_status, p_headers, p_body, now(), now() + p_ttl_micros * interval '1 microsecond')
        ON CONFLICT ON CONSTRAINT dedupe_keys_g0_pkey DO UPDATE
        SET fingerprint = excluded.fingerprint, status = excluded.status, headers = excluded.headers, body = excluded.body,
            created_at = now(), completed_at = now(), expires_at = excluded.expires_at
        WHERE k.expires_at <= clock_timestamp()
        RETURNING k.expires_at INTO e;
    WHEN 1 THEN
        INSERT INTO dedupe_keys_g1 AS k (scope, key, fingerprint, status, headers, body, completed_at, expires_at)
        VALUES (p_scope, p_key, p_fingerprint, p_status, p_headers, p_body, now(), now() + p_ttl_micros * interval '1 microsecond')
        ON CONFLICT ON CONSTRAINT dedupe_keys_g1_pkey DO UPDATE
        SET fingerprint = excluded.fingerprint, status = excluded.status, headers = excluded.headers, body = excluded.body,
            created_at = now(), completed_at = now(), expires_at = excluded.expires_at
        WHERE k.expires_at <= clock_timestamp()
        RETURNING k.expires_at INTO e;
    ELSE
        INSERT INTO dedupe_keys_g2 AS k (scope, key, fingerprint, status, headers, body, completed_at, expires_at)
        VALUES (p_scope, p_key, p_fingerprint, p_status, p_headers, p_body, now(), now() + p_ttl_micros * interval '1 microsecond')
        ON CONFLICT ON CONSTRAINT dedupe_keys_g2_pkey DO UPDATE
        SET fingerprint = excluded.fingerprint, status = excluded.status, headers = excluded.headers, body = excluded.body,
            created_at = now(), completed_at = now(), expires_at = excluded.expires_at
        WHERE k.expires_at <= clock_timestamp()
        RETURNING k.expires_at INTO e;
    END CASE;
    IF e IS NULL THEN
        RAISE EXCEPTION 'pgonce: key (%, %) committed by a concurrent request', p_scope, p_key
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'dedupe_keys_g' || g % 3 || '_pkey';
    END IF;
    RETURN (extract(epoch FROM e - clock_timestamp()) * 1000000)::bigint;
END
$fn$;

ALTER FUNCTION dedupe_gen_store(text, text, integer, jsonb, bytea) RESET plan_cache_mode;
ALTER FUNCTION dedupe_gen_claim(text, text, bytea, bigint) RESET plan_cache_mode;
