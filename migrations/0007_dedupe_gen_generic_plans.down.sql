ALTER FUNCTION dedupe_gen_store(text, text, integer, jsonb, bytea) RESET plan_cache_mode;
ALTER FUNCTION dedupe_gen_claim(text, text, bytea, bigint) RESET plan_cache_mode;
ALTER FUNCTION dedupe_gen_insert(text, text, bytea, integer, jsonb, bytea, bigint) RESET plan_cache_mode;
ALTER FUNCTION dedupe_gen_lookup(text, text, bigint) RESET plan_cache_mode;
