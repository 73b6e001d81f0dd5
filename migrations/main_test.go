package migrations_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// The example runs against a real database: an empty schema exported as DATABASE_URL (unlike
// pgtest.Main, which applies the migrations the example is about).
func TestMain(m *testing.M) {
	base := os.Getenv(pgtest.EnvDatabaseURL)
	if base == "" {
		fmt.Fprintln(os.Stderr, pgtest.HowTo)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	db, drop, err := pgtest.Create(ctx, base, "example", &pgtest.Options{NoMigrations: true})
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
