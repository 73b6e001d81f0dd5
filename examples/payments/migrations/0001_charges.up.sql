-- charges: one row per successful charge, written only by POST /charges inside the
-- idempotency transaction, so each Idempotency-Key moves money at most once.
-- There is deliberately NO unique constraint on reference: the schema must not hide a
-- double charge. Two rows with one reference are exactly what the demo and the checker
-- count as a double charge.
CREATE TABLE charges (
    -- "ch_" and 24 hex digits; returned as "id" and replayed with the stored response.
    id              text        PRIMARY KEY,
    -- Amount in minor units (cents).
    amount          bigint      NOT NULL CHECK (amount > 0),
    -- ISO 4217 code, lower case ("usd").
    currency        text        NOT NULL,
    -- The card token charged ("tok_...").
    card            text        NOT NULL,
    -- The caller's reference (the order), for audits and double-charge checks.
    reference       text        NOT NULL,
    -- The Idempotency-Key the charge was made with: joins to dedupe_keys.key.
    idempotency_key text        NOT NULL,
    -- When the charge committed.
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX charges_reference_idx ON charges (reference);

-- declines: one row per declined charge request (402), committed with its stored answer.
-- No money moved; kept apart from charges so that "rows in charges" is "money taken".
CREATE TABLE declines (
    id              text        PRIMARY KEY,
    amount          bigint      NOT NULL,
    currency        text        NOT NULL,
    card            text        NOT NULL,
    reference       text        NOT NULL,
    -- Why: card_declined's decline code (generic_decline, insufficient_funds).
    decline_code    text        NOT NULL,
    idempotency_key text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX declines_reference_idx ON declines (reference);
