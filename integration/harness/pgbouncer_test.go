package harness

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// fatalRecorder is a testing.TB whose Fatal only records, so a test can check that a helper
// fails its caller (rather than skipping it) and what it says.
type fatalRecorder struct {
	testing.TB
	fatal string
}

func (r *fatalRecorder) Fatal(args ...any) { r.fatal = fmt.Sprint(args...) }

func (r *fatalRecorder) Skip(...any) { r.TB.Error("skipped instead of failing") }

// Without DEDUPE_TEST_PGBOUNCER_URL a PgBouncer test fails (as CI must) and says how to get one.
func TestPgBouncerURLFailsWhenUnset(t *testing.T) {
	t.Setenv(pgtest.EnvPgBouncerURL, "")
	t.Setenv("CI", "true")
	rec := &fatalRecorder{TB: t}
	PgBouncerURL(rec)
	if !strings.Contains(rec.fatal, "scripts/services.sh") || !strings.Contains(rec.fatal, pgtest.EnvPgBouncerURL) {
		t.Fatalf("want a failure naming %s and scripts/services.sh, got %q", pgtest.EnvPgBouncerURL, rec.fatal)
	}
}
