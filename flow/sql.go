package flow

import (
	"fmt"

	"github.com/jackc/pgx/v5"
)

// queries holds the SQL for the two tables, formatted once by New with sanitised names.
// Durations travel as microseconds (bigint) and headers as JSON text cast to jsonb, so that
// every statement works in the query modes that describe no statement (exec,
// simple_protocol: the modes for PgBouncer).
type queries struct {
	dropExpired, claim, inspect, toReconcile, heartbeat, release string
	advance, finish, readStep, outputs                           string
	due, dueReconcile, listReconcile, resolve, redrive, purge    string
}

func newQueries(schema string) queries {
	requests, steps := pgx.Identifier{"flow_requests"}, pgx.Identifier{"flow_steps"}
	if schema != "" {
		requests, steps = pgx.Identifier{schema, "flow_requests"}, pgx.Identifier{schema, "flow_steps"}
	}
	r, s := requests.Sanitize(), steps.Sanitize()
	return queries{
		// A finished request past expires_at counts as new: it leaves before the claim.
		dropExpired: fmt.Sprintf(`/* pgonce:flow_drop_expired */ DELETE FROM %s
WHERE scope = $1 AND key = $2 AND state = 'finished' AND expires_at <= now()`, r),

		// Inserts a new request with a fresh lease, or takes over a running one whose lease
		// ran out inside its re-drive window (same fingerprint and flow), bumping the fence.
		// The WHERE of ON CONFLICT DO UPDATE is checked on the newest row version after any
		// wait, so of concurrent claimers exactly one gets the row; the others get no row
		// and look at it with inspect.
		claim: fmt.Sprintf(`/* pgonce:flow_claim */ INSERT INTO %[1]s AS f
	(scope, key, fingerprint, flow, input, seed, locked_until, redrive_until, expires_at)
VALUES ($1, $2, $3, $4, $5, $6,
	now() + $7::bigint * interval '1 microsecond',
	now() + $8::bigint * interval '1 microsecond',
	now() + $9::bigint * interval '1 microsecond')
ON CONFLICT (scope, key) DO UPDATE
SET locked_until = now() + $7::bigint * interval '1 microsecond', fence = f.fence + 1,
	attempts = f.attempts + 1, updated_at = now()
WHERE f.state = 'running' AND f.locked_until <= now() AND f.redrive_until > now()
	AND f.fingerprint = excluded.fingerprint AND f.flow = excluded.flow
RETURNING f.fence, f.attempts, f.recovery_point, f.seed, f.input`, r),

		inspect: fmt.Sprintf(`/* pgonce:flow_inspect */ SELECT fingerprint, flow, state,
	coalesce(locked_until > now(), false), redrive_until > now(), expires_at <= now(),
	status, headers::text, body, (extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint, attempts
FROM %s WHERE scope = $1 AND key = $2`, r),

		toReconcile: fmt.Sprintf(`/* pgonce:flow_to_reconcile */ UPDATE %s
SET state = 'reconcile', locked_until = NULL, updated_at = now()
WHERE scope = $1 AND key = $2 AND state = 'running' AND locked_until <= now() AND redrive_until <= now()
RETURNING flow, recovery_point, attempts, created_at, updated_at`, r),

		heartbeat: fmt.Sprintf(`/* pgonce:flow_heartbeat */ UPDATE %s
SET locked_until = now() + $4::bigint * interval '1 microsecond'
WHERE scope = $1 AND key = $2 AND fence = $3 AND state = 'running'`, r),

		// Gives the lease back, so that a retry resumes at once instead of waiting it out.
		release: fmt.Sprintf(`/* pgonce:flow_release */ UPDATE %s
SET locked_until = now(), updated_at = now()
WHERE scope = $1 AND key = $2 AND fence = $3 AND state = 'running'`, r),

		// Each state change names the fence it holds: a holder that was taken over changes
		// nothing. One statement moves the recovery point (renewing the lease) and records the
		// step's output; it returns how many request rows it changed (0: the lease was lost).
		// The UPDATE runs first (the INSERT reads its output), so the request row is locked
		// before anything else is written. A step already recorded (a lost acknowledgement
		// replayed) is left as it is.
		advance: fmt.Sprintf(`/* pgonce:flow_advance */ WITH adv AS (
	UPDATE %[1]s
	SET recovery_point = $4, locked_until = now() + $5::bigint * interval '1 microsecond', updated_at = now()
	WHERE scope = $1 AND key = $2 AND fence = $3 AND state = 'running'
	RETURNING scope, key
), rec AS (
	INSERT INTO %[2]s (scope, key, step, output, fence)
	SELECT scope, key, $4::text, $6::bytea, $3::bigint FROM adv
	ON CONFLICT (scope, key, step) DO NOTHING
)
SELECT count(*) FROM adv`, r, s),

		// The same for the step that finishes the request, storing its response; it returns
		// the request's remaining life, or no row when the lease was lost.
		finish: fmt.Sprintf(`/* pgonce:flow_finish */ WITH fin AS (
	UPDATE %[1]s
	SET state = 'finished', recovery_point = $4, status = $5, headers = $6::jsonb, body = $7,
		locked_until = NULL, updated_at = now(),
		expires_at = greatest(redrive_until, now() + $8::bigint * interval '1 microsecond')
	WHERE scope = $1 AND key = $2 AND fence = $3 AND state = 'running'
	RETURNING scope, key, expires_at
), rec AS (
	INSERT INTO %[2]s (scope, key, step, output, fence)
	SELECT scope, key, $4::text, $9::bytea, $3::bigint FROM fin
	ON CONFLICT (scope, key, step) DO NOTHING
)
SELECT (extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint FROM fin`, r, s),

		readStep: fmt.Sprintf(`/* pgonce:flow_read_step */ SELECT output, fence FROM %s
WHERE scope = $1 AND key = $2 AND step = $3`, s),

		outputs: fmt.Sprintf(`/* pgonce:flow_outputs */ SELECT step, output FROM %s
WHERE scope = $1 AND key = $2`, s),

		// The completer's batch: running requests of known flows whose lease ran out inside
		// their window, oldest lease first, skipping rows another completer or a retry is
		// taking right now. Taking them bumps the fence exactly as a retry's claim does.
		due: fmt.Sprintf(`/* pgonce:flow_due */ WITH due AS (
	SELECT scope, key FROM %[1]s
	WHERE state = 'running' AND locked_until <= now() AND redrive_until > now() AND flow = ANY($1::text[])
	ORDER BY locked_until
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE %[1]s f
SET locked_until = now() + $3::bigint * interval '1 microsecond', fence = f.fence + 1,
	attempts = f.attempts + 1, updated_at = now()
FROM due WHERE f.scope = due.scope AND f.key = due.key
RETURNING f.scope, f.key, f.flow, f.fence, f.attempts, f.recovery_point, f.seed, f.input`, r),

		dueReconcile: fmt.Sprintf(`/* pgonce:flow_due_reconcile */ WITH due AS (
	SELECT scope, key FROM %[1]s
	WHERE state = 'running' AND locked_until <= now() AND redrive_until <= now()
	ORDER BY locked_until
	LIMIT $1
	FOR UPDATE SKIP LOCKED
)
UPDATE %[1]s f
SET state = 'reconcile', locked_until = NULL, updated_at = now()
FROM due WHERE f.scope = due.scope AND f.key = due.key
RETURNING f.scope, f.key, f.flow, f.recovery_point, f.attempts, f.created_at, f.updated_at`, r),

		listReconcile: fmt.Sprintf(`/* pgonce:flow_list_reconcile */ SELECT scope, key, flow, recovery_point, attempts, created_at, updated_at
FROM %s WHERE state = 'reconcile' ORDER BY updated_at, scope, key LIMIT $1`, r),

		resolve: fmt.Sprintf(`/* pgonce:flow_resolve */ UPDATE %s
SET state = 'finished', status = $3, headers = $4::jsonb, body = $5, updated_at = now(),
	expires_at = greatest(redrive_until, now() + $6::bigint * interval '1 microsecond')
WHERE scope = $1 AND key = $2 AND state = 'reconcile'`, r),

		redrive: fmt.Sprintf(`/* pgonce:flow_redrive */ UPDATE %s
SET state = 'running', locked_until = now(), updated_at = now(),
	redrive_until = now() + $3::bigint * interval '1 microsecond',
	expires_at = greatest(expires_at, now() + $3::bigint * interval '1 microsecond')
WHERE scope = $1 AND key = $2 AND state = 'reconcile'`, r),

		purge: fmt.Sprintf(`/* pgonce:flow_purge */ DELETE FROM %[1]s
WHERE ctid = ANY(ARRAY(
	SELECT ctid FROM %[1]s
	WHERE state = 'finished' AND expires_at <= now()
	ORDER BY expires_at
	LIMIT $1
	FOR UPDATE SKIP LOCKED
))`, r),
	}
}
