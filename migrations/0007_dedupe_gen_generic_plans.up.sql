-- The generations layout's claim functions plan their statements once per session and keep
-- that plan: plan_cache_mode = force_generic_plan, set on each function.
--
-- Why. Each function has one branch per generation, with static table names (0004, 0006), and
-- a rotation switches every session to the branch of the new current generation. That branch
-- was last planned before its table was truncated, a rotation earlier, and a TRUNCATE
-- invalidates the plans that name the table. So after a rotation every session plans the
-- branch again, and with plan_cache_mode = auto PL/pgSQL plans a statement anew (a custom
-- plan) on each of its first five runs before it settles on a generic plan. The statements
-- look one key up by its primary key: the generic plan is the plan every custom plan is.
--
-- Measured (pgbench, 8 clients running dedupe_gen_lookup + dedupe_gen_insert, a rotation in
-- the middle, four interleaved runs each): the p99 of the claims in flight during the rotation
-- and the half second after it rose 1.36-2.30x over the run's p99 before it with auto, and
-- 1.13-1.69x with force_generic_plan; against the worst baseline window of the same length,
-- 1.18-2.04x and 1.02-1.25x. Steady-state throughput without a rotation was within noise.
ALTER FUNCTION dedupe_gen_lookup(text, text, bigint) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION dedupe_gen_insert(text, text, bytea, integer, jsonb, bytea, bigint) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION dedupe_gen_claim(text, text, bytea, bigint) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION dedupe_gen_store(text, text, integer, jsonb, bytea) SET plan_cache_mode = force_generic_plan;
