-- A cheaper claim for the generations layout, with the same functions' signatures and results,
-- so that a Deduper works against a schema at 0006 or at 0007 alike.
--
-- 1. dedupe_gen_lookup first tries the key's lock without waiting. Got (a new key, or a replay
--    nobody else holds): one lookup after it, in the current and the previous generation. Only
--    when another transaction holds the lock does it look for a live key first (a replay then
--    takes no lock and waits for nobody), and otherwise wait for the lock and look again. A new
--    key thus costs two primary-key probes and one read of dedupe_generations, where 0006 made
--    four and two. A replay now takes the lock when it is free, and holds it until its short
--    transaction ends; a duplicate that finds it held still replays without waiting.
-- 2. dedupe_gen_insert is a plain INSERT. An expired row of the key in the current generation
--    is deleted by dedupe_gen_lookup, under the key's lock, in the claim's transaction, as the
--    default layout's drop_expired does; 0006's INSERT .. ON CONFLICT paid a speculative
--    insertion and a second probe on every new key for that rare case. A live row (committed by
--    a claim that took no lock), or an expired one in a generation that became current without
--    its dead rows truncated, raises unique_violation on dedupe_keys_gN_pkey, as before: the
--    transaction aborts and Do looks again.
-- 3. The claim functions keep one generic plan per statement (plan_cache_mode =
--    force_generic_plan). Each function has one branch per generation, with static table
--    names (0004, 0006), and a rotation switches every session to the new current
--    generation's branch, whose plans the TRUNCATE of its table a rotation earlier
--    invalidated. With plan_cache_mode = auto, PL/pgSQL plans a statement anew (a custom plan)
--    on each of its first five runs; for lookups by primary key the generic plan is the plan
--    every custom plan is.
--
-- Measured (pgbench, 8 clients, the two calls pipelined as Do sends them, empty tables,
-- interleaved runs of 6 s): 1.06-1.14x the claims of 0006's functions. With a rotation in the
-- middle of a run, the p99 of the claims in flight during it and the half second after rose
-- 1.36-2.30x over the run's p99 before it with plan_cache_mode = auto, 1.13-1.69x with
-- force_generic_plan.
--
-- 0004's invariant holds: a key is inserted into the generation current when
-- dedupe_gen_insert reads dedupe_generations, with expires_at <= that moment + max_ttl.

CREATE OR REPLACE FUNCTION dedupe_gen_lookup(p_scope text, p_key text, p_ttl_micros bigint)
RETURNS TABLE (locked boolean, found boolean, fingerprint bytea, status integer, headers jsonb, body bytea, expired boolean, life_micros bigint)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $fn$
#variable_conflict use_column
DECLARE
    g dedupe_generations%ROWTYPE;
    r record;
    hit boolean;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'pgonce: the generations layout of dedupe needs READ COMMITTED, not %',
            current_setting('transaction_isolation') USING ERRCODE = 'feature_not_supported';
    END IF;
    locked := pg_try_advisory_xact_lock(1886351214, hashtext(p_scope || E'\n' || p_key));
    IF NOT locked THEN
        -- Held by a duplicate in flight (or a key whose hash collides): a live key is a replay
        -- and takes no lock; otherwise wait for it.
        SELECT * INTO g FROM dedupe_generations;
        -- Static table names per branch, as in dedupe_gen_claim: cached plans, and only the
        -- executed branch locks its tables.
        CASE g.current % 3
        WHEN 0 THEN
            locked := NOT EXISTS (SELECT FROM dedupe_keys_g0 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()
                UNION ALL SELECT FROM dedupe_keys_g2 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp());
        WHEN 1 THEN
            locked := NOT EXISTS (SELECT FROM dedupe_keys_g1 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()
                UNION ALL SELECT FROM dedupe_keys_g0 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp());
        ELSE
            locked := NOT EXISTS (SELECT FROM dedupe_keys_g2 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()
                UNION ALL SELECT FROM dedupe_keys_g1 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp());
        END CASE;
        IF locked THEN
            PERFORM pg_advisory_xact_lock(1886351214, hashtext(p_scope || E'\n' || p_key));
        END IF;
    END IF;
    -- Read after the lock: a rotation may have committed while it was awaited. Each statement
    -- from here on sees what committed before the lock was granted.
    SELECT * INTO g FROM dedupe_generations;
    IF p_ttl_micros > extract(epoch FROM g.max_ttl) * 1000000 THEN
        RAISE EXCEPTION 'pgonce: TTL of % microseconds exceeds the generations layout''s max_ttl %',
            p_ttl_micros, g.max_ttl USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The key's row: the current generation's whatever its expiry, else a live one from the
    -- previous generation.
    CASE g.current % 3
    WHEN 0 THEN
        SELECT k.* INTO r FROM (SELECT 1 AS o, k.* FROM dedupe_keys_g0 k WHERE k.scope = p_scope AND k.key = p_key
            UNION ALL
            SELECT 2, k.* FROM dedupe_keys_g2 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()) k
        ORDER BY k.o LIMIT 1;
        hit := FOUND;
        IF hit AND locked AND r.o = 1 AND r.expires_at <= clock_timestamp() THEN
            DELETE FROM dedupe_keys_g0 k WHERE k.scope = p_scope AND k.key = p_key;
        END IF;
    WHEN 1 THEN
        SELECT k.* INTO r FROM (SELECT 1 AS o, k.* FROM dedupe_keys_g1 k WHERE k.scope = p_scope AND k.key = p_key
            UNION ALL
            SELECT 2, k.* FROM dedupe_keys_g0 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()) k
        ORDER BY k.o LIMIT 1;
        hit := FOUND;
        IF hit AND locked AND r.o = 1 AND r.expires_at <= clock_timestamp() THEN
            DELETE FROM dedupe_keys_g1 k WHERE k.scope = p_scope AND k.key = p_key;
        END IF;
    ELSE
        SELECT k.* INTO r FROM (SELECT 1 AS o, k.* FROM dedupe_keys_g2 k WHERE k.scope = p_scope AND k.key = p_key
            UNION ALL
            SELECT 2, k.* FROM dedupe_keys_g1 k WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()) k
        ORDER BY k.o LIMIT 1;
        hit := FOUND;
        IF hit AND locked AND r.o = 1 AND r.expires_at <= clock_timestamp() THEN
            DELETE FROM dedupe_keys_g2 k WHERE k.scope = p_scope AND k.key = p_key;
        END IF;
    END CASE;
    IF hit THEN
        RETURN QUERY SELECT locked, true, r.fingerprint, r.status, r.headers, r.body, r.expires_at <= clock_timestamp(),
            (extract(epoch FROM r.expires_at - clock_timestamp()) * 1000000)::bigint;
    ELSE
        RETURN QUERY SELECT locked, false, NULL::bytea, NULL::integer, NULL::jsonb, NULL::bytea, false, 0::bigint;
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION dedupe_gen_insert(p_scope text, p_key text, p_fingerprint bytea, p_status integer,
    p_headers jsonb, p_body bytea, p_ttl_micros bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
    g bigint;
    e timestamptz;
BEGIN
    SELECT current INTO g FROM dedupe_generations;
    CASE g % 3
    WHEN 0 THEN
        INSERT INTO dedupe_keys_g0 (scope, key, fingerprint, status, headers, body, completed_at, expires_at)
        VALUES (p_scope, p_key, p_fingerprint, p_status, p_headers, p_body, now(), now() + p_ttl_micros * interval '1 microsecond')
        RETURNING expires_at INTO e;
    WHEN 1 THEN
        INSERT INTO dedupe_keys_g1 (scope, key, fingerprint, status, headers, body, completed_at, expires_at)
        VALUES (p_scope, p_key, p_fingerprint, p_status, p_headers, p_body, now(), now() + p_ttl_micros * interval '1 microsecond')
        RETURNING expires_at INTO e;
    ELSE
        INSERT INTO dedupe_keys_g2 (scope, key, fingerprint, status, headers, body, completed_at, expires_at)
        VALUES (p_scope, p_key, p_fingerprint, p_status, p_headers, p_body, now(), now() + p_ttl_micros * interval '1 microsecond')
        RETURNING expires_at INTO e;
    END CASE;
    RETURN (extract(epoch FROM e - clock_timestamp()) * 1000000)::bigint;
END
$fn$;

ALTER FUNCTION dedupe_gen_claim(text, text, bytea, bigint) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION dedupe_gen_store(text, text, integer, jsonb, bytea) SET plan_cache_mode = force_generic_plan;
