-- The generations layout of the dedupe table (dedupe.LayoutGenerations), which a Deduper uses
-- only when its Options ask for it; the default layout (dedupe_keys) is untouched. Expired keys
-- leave by TRUNCATE of a whole generation, at a cost that does not grow with their number,
-- instead of by DELETE (WAL, vacuum and bloat in proportion to the volume).
--
-- Three tables of dedupe_keys' shape hold the generations: generation g lives in
-- dedupe_keys_g<g mod 3>. New keys go to the current generation; lookups read the current and
-- the previous one; the third table holds a generation whose keys have all expired, and is
-- truncated. A unique index per table cannot see the other tables, so the claim first takes a
-- transaction-scoped advisory lock on a hash of (scope, key): a duplicate waits there until
-- the first claimer's transaction ends, and then reads, with a snapshot taken after the wait,
-- both live generations. Two keys whose hashes collide only serialise; they never merge.
--
-- Why keys can neither be missed nor truncated while alive: a key is written with
-- expires_at <= its claim time + max_ttl, into the generation that was current when its claim
-- read dedupe_generations. Rotations are at least rotate_every > max_ttl apart (the difference
-- covers a rotation's commit latency), so by the time a second rotation has made that
-- generation dead, every key in it has expired.

-- dedupe_generations is the layout's one-row state.
CREATE TABLE dedupe_generations (
    id           boolean     NOT NULL DEFAULT true,
    -- The current generation; it lives in dedupe_keys_g<current mod 3>.
    current      bigint      NOT NULL DEFAULT 0,
    -- When the current generation became current (clock_timestamp of its rotation).
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The longest TTL a claim may ask for; longer ones are refused (SQLSTATE 22023).
    max_ttl      interval    NOT NULL DEFAULT '24 hours',
    -- The least time between two rotations. It must exceed max_ttl by more than a rotation's
    -- commit can take (synchronous replication included). Keys stay on disk for at most two
    -- rotation periods.
    rotate_every interval    NOT NULL DEFAULT '25 hours',
    CONSTRAINT dedupe_generations_pkey PRIMARY KEY (id),
    CONSTRAINT dedupe_generations_one_row CHECK (id),
    CONSTRAINT dedupe_generations_current CHECK (current >= 0),
    CONSTRAINT dedupe_generations_spacing CHECK (max_ttl > interval '0' AND rotate_every > max_ttl)
);
INSERT INTO dedupe_generations DEFAULT VALUES;

COMMENT ON TABLE dedupe_generations IS 'State of the generations layout of github.com/pgonce/pgonce/dedupe (LayoutGenerations).';

-- Same columns and checks as dedupe_keys; no expires_at index, since nothing deletes by it.
CREATE TABLE dedupe_keys_g0 (LIKE dedupe_keys INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (scope, key));
CREATE TABLE dedupe_keys_g1 (LIKE dedupe_keys INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (scope, key));
CREATE TABLE dedupe_keys_g2 (LIKE dedupe_keys INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (scope, key));

-- dedupe_gen_claim claims (scope, key) for the calling transaction or returns the live
-- committed row, in the columns of the default layout's claim statement (expired is always
-- false: an expired key is re-claimed here). It needs READ COMMITTED: the lookups must see
-- what committed while the advisory lock was awaited. Each statement of a VOLATILE function
-- takes a fresh snapshot, so the lookups see every claim that held the lock before this one.
--
-- The three branches are one statement with the table names of the current generation (c)
-- and the previous one (p) written out: a static statement's plan is cached for the session,
-- where EXECUTE would parse and plan on every call (measured: about half the throughput), and
-- only the executed branch locks its tables, so truncating the dead table never waits for, or
-- blocks, a claim. A live key of the previous generation is returned as it is; otherwise the
-- key is inserted into the current one, or re-claimed there in place when its row expired.
CREATE FUNCTION dedupe_gen_claim(p_scope text, p_key text, p_fingerprint bytea, p_ttl_micros bigint)
RETURNS TABLE (inserted boolean, fingerprint bytea, status integer, headers jsonb, body bytea, expired boolean, life_micros bigint)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    g dedupe_generations%ROWTYPE;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'pgonce: the generations layout of dedupe needs READ COMMITTED, not %',
            current_setting('transaction_isolation') USING ERRCODE = 'feature_not_supported';
    END IF;
    -- 1886351214 is 'pgon' in ASCII: the two-int4 form keeps these locks apart from the
    -- one-bigint locks of pessimistic.XactLock and golang-migrate.
    PERFORM pg_advisory_xact_lock(1886351214, hashtext(p_scope || E'\n' || p_key));
    SELECT * INTO g FROM dedupe_generations;
    IF p_ttl_micros > extract(epoch FROM g.max_ttl) * 1000000 THEN
        RAISE EXCEPTION 'pgonce: TTL of % microseconds exceeds the generations layout''s max_ttl %',
            p_ttl_micros, g.max_ttl USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CASE g.current % 3
    WHEN 0 THEN
        RETURN QUERY WITH p AS (
            SELECT k.fingerprint, k.status, k.headers, k.body, k.expires_at FROM dedupe_keys_g2 k
            WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()
        ), c AS (
            INSERT INTO dedupe_keys_g0 AS k (scope, key, fingerprint, expires_at)
            SELECT p_scope, p_key, p_fingerprint, now() + p_ttl_micros * interval '1 microsecond'
            WHERE NOT EXISTS (SELECT FROM p)
            ON CONFLICT ON CONSTRAINT dedupe_keys_g0_pkey DO UPDATE
            SET fingerprint = excluded.fingerprint, status = NULL, headers = NULL, body = NULL,
                created_at = now(), completed_at = NULL, expires_at = excluded.expires_at
            WHERE k.expires_at <= clock_timestamp()
            RETURNING k.expires_at
        )
        SELECT true, NULL::bytea, NULL::integer, NULL::jsonb, NULL::bytea, false,
            (extract(epoch FROM c.expires_at - clock_timestamp()) * 1000000)::bigint FROM c
        UNION ALL
        SELECT false, k.fingerprint, k.status, k.headers, k.body, false,
            (extract(epoch FROM k.expires_at - clock_timestamp()) * 1000000)::bigint
        FROM dedupe_keys_g0 k
        WHERE k.scope = p_scope AND k.key = p_key AND NOT EXISTS (SELECT FROM c) AND NOT EXISTS (SELECT FROM p)
        UNION ALL
        SELECT false, p.fingerprint, p.status, p.headers, p.body, false,
            (extract(epoch FROM p.expires_at - clock_timestamp()) * 1000000)::bigint FROM p;
    WHEN 1 THEN
        RETURN QUERY WITH p AS (
            SELECT k.fingerprint, k.status, k.headers, k.body, k.expires_at FROM dedupe_keys_g0 k
            WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()
        ), c AS (
            INSERT INTO dedupe_keys_g1 AS k (scope, key, fingerprint, expires_at)
            SELECT p_scope, p_key, p_fingerprint, now() + p_ttl_micros * interval '1 microsecond'
            WHERE NOT EXISTS (SELECT FROM p)
            ON CONFLICT ON CONSTRAINT dedupe_keys_g1_pkey DO UPDATE
            SET fingerprint = excluded.fingerprint, status = NULL, headers = NULL, body = NULL,
                created_at = now(), completed_at = NULL, expires_at = excluded.expires_at
            WHERE k.expires_at <= clock_timestamp()
            RETURNING k.expires_at
        )
        SELECT true, NULL::bytea, NULL::integer, NULL::jsonb, NULL::bytea, false,
            (extract(epoch FROM c.expires_at - clock_timestamp()) * 1000000)::bigint FROM c
        UNION ALL
        SELECT false, k.fingerprint, k.status, k.headers, k.body, false,
            (extract(epoch FROM k.expires_at - clock_timestamp()) * 1000000)::bigint
        FROM dedupe_keys_g1 k
        WHERE k.scope = p_scope AND k.key = p_key AND NOT EXISTS (SELECT FROM c) AND NOT EXISTS (SELECT FROM p)
        UNION ALL
        SELECT false, p.fingerprint, p.status, p.headers, p.body, false,
            (extract(epoch FROM p.expires_at - clock_timestamp()) * 1000000)::bigint FROM p;
    ELSE
        RETURN QUERY WITH p AS (
            SELECT k.fingerprint, k.status, k.headers, k.body, k.expires_at FROM dedupe_keys_g1 k
            WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > clock_timestamp()
        ), c AS (
            INSERT INTO dedupe_keys_g2 AS k (scope, key, fingerprint, expires_at)
            SELECT p_scope, p_key, p_fingerprint, now() + p_ttl_micros * interval '1 microsecond'
            WHERE NOT EXISTS (SELECT FROM p)
            ON CONFLICT ON CONSTRAINT dedupe_keys_g2_pkey DO UPDATE
            SET fingerprint = excluded.fingerprint, status = NULL, headers = NULL, body = NULL,
                created_at = now(), completed_at = NULL, expires_at = excluded.expires_at
            WHERE k.expires_at <= clock_timestamp()
            RETURNING k.expires_at
        )
        SELECT true, NULL::bytea, NULL::integer, NULL::jsonb, NULL::bytea, false,
            (extract(epoch FROM c.expires_at - clock_timestamp()) * 1000000)::bigint FROM c
        UNION ALL
        SELECT false, k.fingerprint, k.status, k.headers, k.body, false,
            (extract(epoch FROM k.expires_at - clock_timestamp()) * 1000000)::bigint
        FROM dedupe_keys_g2 k
        WHERE k.scope = p_scope AND k.key = p_key AND NOT EXISTS (SELECT FROM c) AND NOT EXISTS (SELECT FROM p)
        UNION ALL
        SELECT false, p.fingerprint, p.status, p.headers, p.body, false,
            (extract(epoch FROM p.expires_at - clock_timestamp()) * 1000000)::bigint FROM p;
    END CASE;
END
$fn$;

-- dedupe_gen_store stores the response of the key the calling transaction claimed, in the
-- generation where the claim put it: the current one, or an older one when a rotation came
-- in between. It returns one row when it stored, none when the claimed row is gone.
CREATE FUNCTION dedupe_gen_store(p_scope text, p_key text, p_status integer, p_headers jsonb, p_body bytea)
RETURNS SETOF boolean
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    g bigint;
BEGIN
    SELECT current INTO g FROM dedupe_generations;
    -- The current generation first, then the previous one, then the oldest.
    FOR i IN 0..2 LOOP
        CASE (g + 3 - i) % 3
        WHEN 0 THEN
            UPDATE dedupe_keys_g0 k SET status = p_status, headers = p_headers, body = p_body, completed_at = now()
            WHERE k.scope = p_scope AND k.key = p_key AND k.status IS NULL;
        WHEN 1 THEN
            UPDATE dedupe_keys_g1 k SET status = p_status, headers = p_headers, body = p_body, completed_at = now()
            WHERE k.scope = p_scope AND k.key = p_key AND k.status IS NULL;
        ELSE
            UPDATE dedupe_keys_g2 k SET status = p_status, headers = p_headers, body = p_body, completed_at = now()
            WHERE k.scope = p_scope AND k.key = p_key AND k.status IS NULL;
        END CASE;
        IF FOUND THEN
            RETURN NEXT true;
            RETURN;
        END IF;
    END LOOP;
END
$fn$;

-- dedupe_gen_rotate makes the next generation current when the current one is at least
-- rotate_every old, and reports whether it did and which generation is current. It takes the
-- state row's lock (concurrent rotators serialise) and touches no key table, so it never waits
-- for a claim; commit it before dedupe_gen_drop_dead runs.
CREATE FUNCTION dedupe_gen_rotate()
RETURNS TABLE (rotated boolean, generation bigint)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
DECLARE
    g dedupe_generations%ROWTYPE;
BEGIN
    SELECT * INTO g FROM dedupe_generations FOR UPDATE;
    IF clock_timestamp() < g.started_at + g.rotate_every THEN
        RETURN QUERY SELECT false, g.current;
        RETURN;
    END IF;
    UPDATE dedupe_generations SET current = g.current + 1, started_at = clock_timestamp();
    RETURN QUERY SELECT true, g.current + 1;
END
$fn$;

-- dedupe_gen_drop_dead truncates the dead generation (the one neither current nor previous)
-- when it holds rows, and returns the planner's estimate of how many it held
-- (pg_class.reltuples; counting them exactly would cost a scan). Every key in it has expired.
-- It waits only for transactions that claimed before the last rotation committed; claims
-- that started after it never touch this table, so none queues behind the TRUNCATE.
CREATE FUNCTION dedupe_gen_drop_dead()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
DECLARE
    t text;
    est bigint;
    any_row boolean;
BEGIN
    -- The state row's lock serialises concurrent purgers, which would otherwise deadlock
    -- upgrading their table locks from the EXISTS below to the TRUNCATE.
    SELECT 'dedupe_keys_g' || (current + 1) % 3 INTO t FROM dedupe_generations FOR UPDATE;
    EXECUTE format('SELECT EXISTS (SELECT FROM %I)', t) INTO any_row;
    IF NOT any_row THEN
        RETURN 0;
    END IF;
    SELECT greatest(c.reltuples, 0)::bigint INTO est FROM pg_class c WHERE c.oid = t::regclass;
    EXECUTE format('TRUNCATE %I', t);
    RETURN est;
END
$fn$;
