package delivery_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// TestMain gives the runnable example a schema of its own (its URL in DATABASE_URL, as a
// service would read it). Without DEDUPE_TEST_DATABASE_URL the tests that need PostgreSQL
// fail with how to get one, and the pure ones run.
func TestMain(m *testing.M) {
	base := os.Getenv(pgtest.EnvDatabaseURL)
	if base == "" || os.Getenv(helperEnv) != "" {
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	db, drop, err := pgtest.Create(ctx, base, "delivery_example", nil)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		os.Exit(1)
	}
	os.Setenv("DATABASE_URL", db.URL)
	code := m.Run()
	drop()
	os.Exit(code)
}
