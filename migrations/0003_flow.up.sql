-- flow_requests holds one row per phased request (package flow): an idempotency key whose
-- work runs as named steps, some of them calls to other services. The row carries the
-- request's progress (its recovery point), a lease with a fencing token, and at the end the
-- response to replay. Every change to a running request checks the fence, so a holder whose
-- lease ran out while it was paused cannot overwrite the work of the one that took over.
CREATE TABLE flow_requests (
    -- Namespace and idempotency key, as in dedupe_keys.
    scope          text        NOT NULL,
    key            text        NOT NULL,
    -- Hash of the request the key was first used with; another request with the key is refused.
    fingerprint    bytea       NOT NULL DEFAULT '\x'::bytea,
    -- The registered flow (flow.Flow.Name) that runs the request, so the completer can resume it.
    flow           text        NOT NULL,
    -- The request's input, given to every step, kept so that a re-drive runs on the same input.
    input          bytea       NOT NULL DEFAULT '\x'::bytea,
    -- 32 random bytes drawn when the request is first claimed. Outbound idempotency keys are
    -- derived from it: the same on every re-drive of this request, never another request's.
    seed           bytea       NOT NULL,
    -- Name of the last step whose outcome committed; '' before the first.
    recovery_point text        NOT NULL DEFAULT '',
    -- running: steps remain; finished: the response is stored; reconcile: the lease ran out
    -- past the re-drive window, and the request waits for a person (flow.Runner.Resolve).
    state          text        NOT NULL DEFAULT 'running',
    -- The lease: the holder may work on the request until then; a heartbeat extends it.
    locked_until   timestamptz,
    -- Fencing token, incremented by every take-over; each state change names the token it holds.
    fence          bigint      NOT NULL DEFAULT 1,
    -- How many times the request was taken (first claim, retries, the completer).
    attempts       integer     NOT NULL DEFAULT 1,
    -- Stored response, set when state becomes finished.
    status         integer,
    headers        jsonb,
    body           bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- Past this instant a request whose lease ran out is not re-driven: it goes to reconcile.
    redrive_until  timestamptz NOT NULL,
    -- Past this instant a finished request counts as new again, and Purge may delete it.
    expires_at     timestamptz NOT NULL,
    CONSTRAINT flow_requests_pkey PRIMARY KEY (scope, key),
    CONSTRAINT flow_requests_scope_length CHECK (octet_length(scope) BETWEEN 1 AND 512),
    CONSTRAINT flow_requests_key_length CHECK (octet_length(key) BETWEEN 1 AND 255),
    CONSTRAINT flow_requests_fingerprint_length CHECK (octet_length(fingerprint) <= 64),
    CONSTRAINT flow_requests_seed_length CHECK (octet_length(seed) = 32),
    CONSTRAINT flow_requests_state CHECK (state IN ('running', 'finished', 'reconcile')),
    CONSTRAINT flow_requests_finished_has_response CHECK (state <> 'finished' OR status IS NOT NULL),
    CONSTRAINT flow_requests_status_range CHECK (status BETWEEN 0 AND 999),
    CONSTRAINT flow_requests_headers_object CHECK (headers IS NULL OR jsonb_typeof(headers) = 'object'),
    CONSTRAINT flow_requests_expiry CHECK (expires_at >= redrive_until)
);

-- The completer's scan: running requests whose lease ran out, oldest lease first.
CREATE INDEX flow_requests_running_idx ON flow_requests (locked_until) WHERE state = 'running';
-- Purge of finished requests past expires_at.
CREATE INDEX flow_requests_expires_at_idx ON flow_requests (expires_at) WHERE state = 'finished';

COMMENT ON TABLE flow_requests IS 'Phased requests of github.com/pgonce/pgonce/flow: progress, lease and fence, stored response.';

-- flow_steps records each finished step's output, committed with the step (a local step's
-- writes, or, for a call to another service, in a short transaction after the call).
CREATE TABLE flow_steps (
    scope       text        NOT NULL,
    key         text        NOT NULL,
    step        text        NOT NULL,
    -- What the step returned, given to the steps after it.
    output      bytea       NOT NULL DEFAULT '\x'::bytea,
    -- The fencing token of the holder that recorded it.
    fence       bigint      NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT flow_steps_pkey PRIMARY KEY (scope, key, step),
    CONSTRAINT flow_steps_request_fkey FOREIGN KEY (scope, key)
        REFERENCES flow_requests (scope, key) ON DELETE CASCADE
);

COMMENT ON TABLE flow_steps IS 'Recorded outputs of the steps of github.com/pgonce/pgonce/flow requests.';
