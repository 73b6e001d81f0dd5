package flow

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The schema refuses a flow_requests row that breaks a rule Go also enforces, for rows written
// by other code (one CHECK constraint, flow_requests_valid, since migration 0005).
func TestSchemaConstraints(t *testing.T) {
	pool := testDB(t)
	ctx := context.Background()
	const ok = `INSERT INTO flow_requests (scope, key, fingerprint, flow, seed, state, status, headers, redrive_until, expires_at)
		VALUES ('s', 'k', '\x00', 'f', decode(repeat('00', 32), 'hex'), 'running', NULL, NULL, now() + interval '1 hour', now() + interval '2 hours')`
	for name, c := range map[string][2]string{
		"empty scope":                   {"('s', 'k',", "('', 'k',"},
		"long key":                      {"'s', 'k',", "'s', repeat('k', 256),"},
		"long fingerprint":              {`'\x00', 'f'`, `decode(repeat('00', 65), 'hex'), 'f'`},
		"short seed":                    {"repeat('00', 32)", "repeat('00', 31)"},
		"unknown state":                 {"'running'", "'paused'"},
		"finished without a response":   {"'running'", "'finished'"},
		"status out of range":           {"'running', NULL", "'running', 1000"},
		"headers not an object":         {"NULL, NULL, now()", "NULL, '[]', now()"},
		"expires before redrive window": {"now() + interval '2 hours')", "now())"},
	} {
		bad := strings.Replace(ok, c[0], c[1], 1)
		if !assert.NotEqual(t, ok, bad, name) {
			continue
		}
		_, err := pool.Exec(ctx, bad)
		assert.ErrorContains(t, err, "23514", name) // check_violation
	}
	_, err := pool.Exec(ctx, ok)
	assert.NoError(t, err, "a valid row")
	_, err = pool.Exec(ctx, strings.Replace(strings.Replace(ok, "'k'", "'k2'", 1), "'running', NULL", "'finished', 201", 1))
	assert.NoError(t, err, "a finished row with its response")
}
