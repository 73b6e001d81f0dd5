package pessimistic_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pgonce/pgonce/pessimistic"
)

// The documented test vectors: other languages check their implementation against these, so
// they must never change.
func TestKeyVectors(t *testing.T) {
	for name, want := range map[string]int64{
		"":               -2039914840885289964,
		"nightly-report": 7440995589958059143,
		"é":              5375421630974772051,
	} {
		assert.Equal(t, want, pessimistic.AdvisoryKey(name), "%q", name)
	}
	assert.Equal(t, pessimistic.AdvisoryKey("run-once:daily-report\x1f2026-11-22"), pessimistic.RunOnceKey("daily-report", "2026-11-22"))
	assert.NotEqual(t, pessimistic.RunOnceKey("a", "b:c"), pessimistic.RunOnceKey("a:b", "c"))
}
