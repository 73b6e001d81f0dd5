package volume

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Scope is the scope of every key the benchmark writes.
const Scope = "POST /orders"

// Fill inserts rows keys into table (of dedupe_keys' shape) in schema, each with a stored
// 201 response, and returns nothing until they are committed. Keys are md5 hex strings, so
// they spread over the index as random client keys do. expired puts expires_at in the past.
//
// With rebuild, the table's indexes are dropped, the rows inserted and the indexes built again
// in one transaction (10M rows in about 1.5 minutes on 2 cores, against 7 or more by plain
// inserts); the indexes are then as compact as after a REINDEX. Without it, rows go in through
// the indexes as a service's inserts would (for the bloat cycles).
//
// The table is then analysed; after a rebuild it is also vacuumed, as autovacuum would long
// since have done for keys that old: 10M inserted rows pass autovacuum's insert threshold, and
// its VACUUM, reading the whole heap, would otherwise land in the middle of a measurement.
func Fill(ctx context.Context, pool *pgxpool.Pool, schema, table string, from, rows int, expired, rebuild bool) error {
	t := pgx.Identifier{schema, table}.Sanitize()
	exp := "now() + interval '1 day'"
	if expired {
		exp = "now() - interval '1 hour'"
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, `SET LOCAL maintenance_work_mem = '512MB'`); err != nil {
		return err
	}
	var indexes []string
	if rebuild {
		rows, err := tx.Query(ctx, `SELECT pg_get_indexdef(i.indexrelid), ic.relname::text, c.conname::text
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE i.indrelid = $1::regclass`, t)
		if err != nil {
			return err
		}
		var drops []string
		for rows.Next() {
			var def, name string
			var con *string
			if err := rows.Scan(&def, &name, &con); err != nil {
				return err
			}
			if con != nil {
				drops = append(drops, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", t, pgx.Identifier{*con}.Sanitize()))
				indexes = append(indexes, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s PRIMARY KEY (scope, key)", t, pgx.Identifier{*con}.Sanitize()))
				continue
			}
			drops = append(drops, "DROP INDEX "+pgx.Identifier{schema, name}.Sanitize())
			indexes = append(indexes, def)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, d := range drops {
			if _, err := tx.Exec(ctx, d); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
		}
	}
	// created_at is two hours back so that the CHECK (expires_at > created_at) holds for the
	// expired rows too; expires_at is spread over a minute so purges walk a real index range.
	sql := fmt.Sprintf(`INSERT INTO %s (scope, key, status, body, created_at, completed_at, expires_at)
SELECT $1, md5(i::text), 201, '\x7b226964223a317d'::bytea, now() - interval '2 hours', now() - interval '2 hours',
	%s + (i %% 60000) * interval '1 millisecond'
FROM generate_series($2::bigint, $3::bigint) i`, t, exp)
	if _, err := tx.Exec(ctx, sql, Scope, from, from+rows-1); err != nil {
		return err
	}
	for _, def := range indexes {
		if _, err := tx.Exec(ctx, def); err != nil {
			return fmt.Errorf("%s: %w", def, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	maintain := "ANALYZE "
	if rebuild {
		maintain = "VACUUM (ANALYZE) "
	}
	_, err = pool.Exec(ctx, maintain+t)
	return err
}

// Size is a table's disk footprint.
type Size struct {
	Table, Indexes int64 // bytes: heap (with TOAST, FSM, VM) and all indexes
}

// Total is Table plus Indexes.
func (s Size) Total() int64 { return s.Table + s.Indexes }

// Sizes adds up the sizes of tables in schema.
func Sizes(ctx context.Context, pool *pgxpool.Pool, schema string, tables ...string) (Size, error) {
	var s Size
	for _, table := range tables {
		var tb, ix int64
		if err := pool.QueryRow(ctx, `SELECT pg_table_size($1::regclass), pg_indexes_size($1::regclass)`,
			pgx.Identifier{schema, table}.Sanitize()).Scan(&tb, &ix); err != nil {
			return s, err
		}
		s.Table += tb
		s.Indexes += ix
	}
	return s, nil
}
