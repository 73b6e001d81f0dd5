package main

import (
	"context"
	"fmt"
	"text/tabwriter"
)

const statsHelp = `stats [flags]

Prints the dedupe table's rows by scope (all, expired and waiting for purge, claims still
open), and the sizes of the table and each of its indexes. Counting reads the whole table:
on a large table this takes a while and one sequential scan's worth of I/O.`

// %[1]s is the sanitised dedupe table; $1 is the same name as text, for to_regclass.
const (
	sqlStatsSizes = `SELECT pg_size_pretty(pg_table_size(c)), pg_size_pretty(pg_indexes_size(c)),
	pg_size_pretty(pg_total_relation_size(c))
FROM to_regclass($1::text) c WHERE c IS NOT NULL`
	sqlStatsIndexes = `SELECT i.indexrelid::regclass::text, pg_size_pretty(pg_relation_size(i.indexrelid))
FROM pg_index i WHERE i.indrelid = to_regclass($1::text) ORDER BY 1`
	sqlStatsScopes = `SELECT scope, count(*), count(*) FILTER (WHERE expires_at <= now()),
	count(*) FILTER (WHERE completed_at IS NULL)
FROM %[1]s GROUP BY scope ORDER BY scope`
)

func (a *app) stats(ctx context.Context, args []string) int {
	c := a.newCommand("stats", statsHelp)
	if _, code, ok := a.parse(c, args, 0); !ok {
		return code
	}
	pool, err := c.connect(ctx)
	if err != nil {
		return a.fail(c.name, err)
	}
	defer pool.Close()
	table := c.keysTable().Sanitize()

	var tableSize, indexSize, totalSize string
	if err := pool.QueryRow(ctx, sqlStatsSizes, table).Scan(&tableSize, &indexSize, &totalSize); err != nil {
		return a.fail(c.name, fmt.Errorf("table %s: %w (run pgonce migrate up?)", table, err))
	}
	type scopeRow struct {
		scope               string
		rows, expired, open int64
	}
	var (
		scopes []scopeRow
		total  scopeRow
		s      scopeRow
	)
	rows, err := pool.Query(ctx, fmt.Sprintf(sqlStatsScopes, table))
	if err != nil {
		return a.fail(c.name, err)
	}
	for rows.Next() {
		if err := rows.Scan(&s.scope, &s.rows, &s.expired, &s.open); err != nil {
			rows.Close()
			return a.fail(c.name, err)
		}
		scopes = append(scopes, s)
		total.rows, total.expired, total.open = total.rows+s.rows, total.expired+s.expired, total.open+s.open
	}
	if err := rows.Err(); err != nil {
		return a.fail(c.name, err)
	}
	type index struct{ name, size string }
	var indexes []index
	rows, err = pool.Query(ctx, sqlStatsIndexes, table)
	if err != nil {
		return a.fail(c.name, err)
	}
	for rows.Next() {
		var i index
		if err := rows.Scan(&i.name, &i.size); err != nil {
			rows.Close()
			return a.fail(c.name, err)
		}
		indexes = append(indexes, i)
	}
	if err := rows.Err(); err != nil {
		return a.fail(c.name, err)
	}

	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "scope\trows\texpired\topen\n")
	for _, s := range scopes {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", s.scope, s.rows, s.expired, s.open)
	}
	fmt.Fprintf(w, "(all)\t%d\t%d\t%d\n", total.rows, total.expired, total.open)
	if err := w.Flush(); err != nil {
		return a.fail(c.name, err)
	}
	fmt.Fprintln(a.stdout)
	fmt.Fprintf(w, "relation\tsize\n")
	fmt.Fprintf(w, "%s (table)\t%s\n", table, tableSize)
	for _, i := range indexes {
		fmt.Fprintf(w, "%s\t%s\n", i.name, i.size)
	}
	fmt.Fprintf(w, "(total)\t%s\n", totalSize)
	if err := w.Flush(); err != nil {
		return a.fail(c.name, err)
	}
	fmt.Fprintf(a.stdout, "%d expired keys waiting for purge\n", total.expired)
	return exitOK
}
