package harness

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// PgBouncerURL returns DEDUPE_TEST_PGBOUNCER_URL, a PgBouncer in transaction pooling in front
// of PostgresURL's server. Unset, the test fails (it never skips: a CI run without a pooler
// must not pass as if the toolkit had been checked behind one) with how to get one.
func PgBouncerURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(pgtest.EnvPgBouncerURL)
	if u == "" {
		tb.Fatal(pgtest.HowToPgBouncer)
	}
	return u
}

// PooledDB returns a fresh database, migrated through the direct URL, whose Pool goes through
// PgBouncer (see pgtest.Pooled); it is dropped when tb ends.
func PooledDB(tb testing.TB, opts *pgtest.Options) *pgtest.Pooled {
	tb.Helper()
	pooler := PgBouncerURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, drop, err := pgtest.CreatePooled(ctx, PostgresURL(tb), pooler, tb.Name(), opts)
	if err != nil {
		tb.Fatalf("harness: %v", err)
	}
	tb.Cleanup(drop)
	return db
}
