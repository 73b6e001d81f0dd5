package optimistic_test

import (
	"context"
	"log"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// The examples run against a real database: an isolated schema exported as DATABASE_URL.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openExampleTable connects as a service would and creates a fresh table for one example.
func openExampleTable(ctx context.Context, ddl string) *pgxpool.Pool {
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, ddl); err != nil {
		log.Fatal(err)
	}
	return pool
}
