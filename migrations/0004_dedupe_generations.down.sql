DROP FUNCTION IF EXISTS dedupe_gen_claim(text, text, bytea, bigint);
DROP FUNCTION IF EXISTS dedupe_gen_store(text, text, integer, jsonb, bytea);
DROP FUNCTION IF EXISTS dedupe_gen_rotate();
DROP FUNCTION IF EXISTS dedupe_gen_drop_dead();
DROP TABLE IF EXISTS dedupe_keys_g0, dedupe_keys_g1, dedupe_keys_g2, dedupe_generations;
