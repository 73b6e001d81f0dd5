package redisguard_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// TestMain needs a Redis server for the examples (and a PostgreSQL one for the guard's):
// it exports DEDUPE_TEST_REDIS_URL as REDIS_URL, which the examples read as a service would.
func TestMain(m *testing.M) {
	u := os.Getenv(pgtest.EnvRedisURL)
	if u == "" {
		fmt.Fprintln(os.Stderr, pgtest.HowTo)
		os.Exit(1)
	}
	os.Setenv("REDIS_URL", u)
	os.Exit(pgtest.Main(m))
}
