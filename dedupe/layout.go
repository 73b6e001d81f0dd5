package dedupe

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Layout chooses the tables in which a Deduper keeps its keys, and so how expired keys leave.
// Both layouts keep every promise of Do; they differ in what retention costs.
type Layout int

const (
	// LayoutTable (the default) keeps every key in dedupe_keys (migration 0001). Purge
	// deletes expired keys in batches: its cost, in WAL, vacuum work and dead space, grows
	// with the number of keys removed.
	LayoutTable Layout = iota

	// LayoutGenerations keeps keys in three generation tables (dedupe_keys_g0..2, migrations
	// 0004 and 0006) and removes expired keys by truncating a whole generation, at a cost that
	// does not depend on how many keys it holds. A claim first takes a transaction-scoped
	// advisory lock on a hash of (scope, key), the default layout's key lock, so a duplicate
	// waits for the first claimer across generations, then looks in the current and the
	// previous generation.
	// A lock-first claim (Do's own transaction, READ COMMITTED) is one call of a PL/pgSQL
	// function with BEGIN (dedupe_gen_lookup: the lock and the lookup) and one with COMMIT
	// (dedupe_gen_insert: the key with its response, into the generation current then;
	// migration 0006); an insert-first claim one call of dedupe_gen_claim. Round trips are
	// the default layout's. Since migration 0007 the lookup tries the lock without waiting
	// first, so a new key probes each live generation once; a replay never waits (it takes
	// the lock when it is free, and looks for the live key without it when another
	// transaction holds it). The insert is a plain INSERT, and the functions keep one generic
	// plan per statement, so that a rotation costs each session one plan of the new
	// generation's branch.
	//
	// Limits: transactions must be READ COMMITTED (the claim refuses others, since a duplicate
	// must see what committed while it waited); a TTL longer than dedupe_generations.max_ttl
	// (default 24h) is refused with SQLSTATE 22023; keys stay on disk up to two rotation
	// periods (dedupe_generations.rotate_every, default 25h, which must exceed max_ttl); Purge
	// must be given a pool or a connection, not a transaction. Works in every pgx
	// QueryExecMode and behind PgBouncer in transaction pooling (the locks are
	// transaction-scoped).
	LayoutGenerations
)

// String names the layout as the flags of the commands do ("table", "generations").
func (l Layout) String() string {
	switch l {
	case LayoutTable:
		return "table"
	case LayoutGenerations:
		return "generations"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

// ParseLayout is the inverse of Layout.String.
func ParseLayout(s string) (Layout, error) {
	switch s {
	case "table", "":
		return LayoutTable, nil
	case "generations":
		return LayoutGenerations, nil
	}
	return 0, fmt.Errorf("dedupe: unknown layout %q (want table or generations)", s)
}

// generations holds the SQL of the generations layout that the shared claim path does not
// run: the rotation and the truncation of the dead generation.
type generations struct {
	rotate, dropDead string
}

// generationQueries returns the claim path's statements for LayoutGenerations (calls of the
// migration's functions, schema-qualified when schema is set) and the layout's own.
func generationQueries(schema string) (queries, *generations) {
	fn := func(name string) string {
		if schema == "" {
			return pgx.Identifier{name}.Sanitize()
		}
		return pgx.Identifier{schema, name}.Sanitize()
	}
	// Parameters are cast so that no query mode depends on the server describing them.
	q := queries{
		claim: `/* pgonce:claim */ SELECT inserted, fingerprint, status, headers, body, expired, life_micros FROM ` +
			fn("dedupe_gen_claim") + `($1::text, $2::text, $3::bytea, $4::bigint)`,
		// A row comes back when the response was stored, none when the claimed row is gone:
		// the store's RowsAffected check in Do works unchanged.
		store: `/* pgonce:store */ SELECT FROM ` + fn("dedupe_gen_store") + `($1::text, $2::text, $3::integer, $4::jsonb, $5::bytea)`,
		// The lock-first claim (migration 0006).
		lockLookup: `/* pgonce:lock_lookup */ SELECT locked, found, fingerprint, status, headers, body, expired, life_micros FROM ` +
			fn("dedupe_gen_lookup") + `($1::text, $2::text, $3::bigint)`,
		insertDone: `/* pgonce:insert_done */ SELECT ` + fn("dedupe_gen_insert") +
			`($1::text, $2::text, $3::bytea, $4::integer, $5::jsonb, $6::bytea, $7::bigint)`,
	}
	return q, &generations{
		rotate:   `/* pgonce:rotate */ SELECT rotated, generation FROM ` + fn("dedupe_gen_rotate") + `()`,
		dropDead: `/* pgonce:drop_dead */ SELECT ` + fn("dedupe_gen_drop_dead") + `()`,
	}
}

// ErrPurgeInTx means Purge was given a transaction for a Deduper with LayoutGenerations: the
// rotation must commit before the dead generation is truncated, or the TRUNCATE would wait
// for, and then block, every claim in flight.
var ErrPurgeInTx = errors.New("dedupe: the generations layout purges through a pool or a connection, not a transaction")

// rowQuerier is what purgeGenerations needs to read the functions' results; pools,
// connections and transactions have it.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// purgeGenerations is Purge for LayoutGenerations: it rotates when the current generation is
// dedupe_generations.rotate_every old (one short statement, committed on its own), then
// truncates the dead generation if it holds rows. It returns the planner's estimate of the
// number of keys truncated. Cost: two round trips; the TRUNCATE waits only for transactions
// that claimed before the previous rotation committed.
func (d *Deduper) purgeGenerations(ctx context.Context, db Execer) (int64, error) {
	if _, ok := db.(pgx.Tx); ok {
		return 0, ErrPurgeInTx
	}
	q, ok := db.(rowQuerier)
	if !ok {
		return 0, fmt.Errorf("dedupe: purge: the generations layout needs QueryRow (a pool or a connection), got %T", db)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rotated bool
	var gen int64
	if err := q.QueryRow(ctx, d.gen.rotate).Scan(&rotated, &gen); err != nil {
		return 0, fmt.Errorf("dedupe: purge: rotate: %w", err)
	}
	var n int64
	if err := q.QueryRow(ctx, d.gen.dropDead).Scan(&n); err != nil {
		return 0, fmt.Errorf("dedupe: purge: truncate the dead generation: %w", err)
	}
	return n, nil
}
