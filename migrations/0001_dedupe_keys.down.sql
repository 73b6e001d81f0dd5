DROP TABLE IF EXISTS dedupe_keys;
