package otelpgonce_test

import (
	"os"
	"testing"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// The example and the end-to-end tests run against a real database (DEDUPE_TEST_DATABASE_URL).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
