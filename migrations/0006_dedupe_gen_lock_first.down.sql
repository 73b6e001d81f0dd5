DROP FUNCTION IF EXISTS dedupe_gen_insert(text, text, bytea, integer, jsonb, bytea, bigint);
DROP FUNCTION IF EXISTS dedupe_gen_lookup(text, text, bigint);
