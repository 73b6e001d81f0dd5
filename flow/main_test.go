package flow

import (
	"os"
	"testing"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// The tests run against a real database: each test gets its own migrated schema.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
