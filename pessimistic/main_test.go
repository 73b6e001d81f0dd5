package pessimistic_test

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

// openPool connects as a service would and runs the example's set-up SQL, if any.
func openPool(ctx context.Context, setup string) *pgxpool.Pool {
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	if setup != "" {
		if _, err := pool.Exec(ctx, setup); err != nil {
			log.Fatal(err)
		}
	}
	return pool
}
