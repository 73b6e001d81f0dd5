package bench

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/integration/harness"
)

// TestFlowPeers runs a few requests through every peer of the flow comparison, so that a
// broken peer fails here and not in the middle of `make bench-flow`: each request answers,
// leaves one confirmed order and calls the provider once, and the statement counter sees
// each peer's statements.
func TestFlowPeers(t *testing.T) {
	env, closeEnv, err := OpenFlow(context.Background(), harness.PostgresURL(t), FlowOptions{Queue: true})
	require.NoError(t, err)
	t.Cleanup(closeEnv)
	for _, c := range FlowCases() {
		t.Run(c.ID, func(t *testing.T) {
			m, err := RunFlowCell(context.Background(), env, c, 4, 0, 0, 20)
			require.NoError(t, err) // includes: no unconfirmed order, none duplicated
			assert.Equal(t, 20, m.Stats.Sends)
			assert.InDelta(t, 1.0, m.Calls, 1e-9, "provider calls per request")
			assert.GreaterOrEqual(t, m.RoundTrips, 6.0, "round trips per request")
		})
	}
}
