-- daily_reports: the nightly report, one row per day, built by exactly one instance.
CREATE TABLE daily_reports (
    -- The day reported on (UTC).
    day        date        PRIMARY KEY,
    -- Orders, units and distinct customers that day.
    orders     integer     NOT NULL,
    units      integer     NOT NULL,
    customers  integer     NOT NULL,
    -- Which instance built it, and when.
    built_by   text        NOT NULL,
    built_at   timestamptz NOT NULL DEFAULT now()
);

-- outbox: messages to send (a mailer would read and deliver these). The per-customer daily
-- summary is written here under a dedupe key per (customer, day), so nobody gets two.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    customer_id text        NOT NULL,
    kind        text        NOT NULL,
    body        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
