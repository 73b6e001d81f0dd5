package delivery

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// Our statements on River's job table. The kind is a literal, not a parameter, so that the
// planner can use the partial index pgonce_delivery_ordering (Migrate) with generic plans.
const (
	// The earliest message still to deliver before $2 with ordering key $1, and how long
	// until its next attempt is due.
	sqlHead = `SELECT /* pgonce:delivery_head */ extract(epoch FROM greatest(scheduled_at - now(), interval '0'))::float8
FROM river_job
WHERE kind = 'pgonce_delivery' AND args ? 'ordering_key' AND args->>'ordering_key' = $1 AND id < $2
  AND state IN ('available', 'pending', 'retryable', 'running', 'scheduled')
ORDER BY id LIMIT 1`

	sqlListDead = `SELECT /* pgonce:delivery_list_dead */ id, args, state, attempt, finalized_at,
  coalesce(errors[array_upper(errors, 1)]->>'error', '')
FROM river_job
WHERE kind = 'pgonce_delivery' AND state IN ('cancelled', 'discarded') AND id > $1
ORDER BY id LIMIT $2`

	sqlLockForRedrive = `SELECT /* pgonce:delivery_redrive_lock */ state
FROM river_job WHERE id = $1 AND kind = 'pgonce_delivery' FOR UPDATE`

	// A re-driven message gets a fresh budget of attempts (River's JobRetry alone gives one).
	sqlRedriveBudget = `UPDATE /* pgonce:delivery_redrive_budget */ river_job
SET max_attempts = attempt + $2 WHERE id = $1`

	sqlOrderingIndex = `CREATE INDEX /* pgonce:delivery_ordering_index */ IF NOT EXISTS pgonce_delivery_ordering
ON river_job ((args->>'ordering_key'), id) WHERE kind = 'pgonce_delivery' AND args ? 'ordering_key'`
)

// statements are the constants above with River's table qualified by the Client's schema.
type statements struct {
	head, listDead, lockForRedrive, redriveBudget, orderingIndex string
	outboxTable, outboxInsert, outboxTake, outboxProbe           string
}

func newStatements(schema string) statements {
	q := func(s string) string {
		if schema == "" {
			return s
		}
		s = strings.ReplaceAll(s, " pgonce_delivery_outbox", " "+pgx.Identifier{schema, "pgonce_delivery_outbox"}.Sanitize())
		return strings.Replace(s, " river_job", " "+pgx.Identifier{schema, "river_job"}.Sanitize(), 1)
	}
	return statements{
		head: q(sqlHead), listDead: q(sqlListDead), lockForRedrive: q(sqlLockForRedrive),
		redriveBudget: q(sqlRedriveBudget), orderingIndex: q(sqlOrderingIndex),
		outboxTable: q(sqlOutboxTable), outboxInsert: q(sqlOutboxInsert), outboxTake: q(sqlOutboxTake),
		outboxProbe: q(sqlOutboxProbe),
	}
}
