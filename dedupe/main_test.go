package dedupe_test

import (
	"os"
	"testing"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// The examples run against a real database: an isolated schema exported as DATABASE_URL.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
