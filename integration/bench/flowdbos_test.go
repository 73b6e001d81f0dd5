package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/pgonce/pgonce/integration/harness"
)

// BenchmarkFlowVsDBOS runs the three-step request (local, foreign, local) through flow and
// through DBOS Transact (in-process and queued) at 1, 8 and 32 clients: one op is one
// request with a new key. The queue's runner polls during every cell here; cmd/benchflow
// measures in-process mode without it. cmd/benchflow prints the same comparison as a table with ratios.
func BenchmarkFlowVsDBOS(b *testing.B) {
	env, closeEnv, err := OpenFlow(context.Background(), harness.PostgresURL(b), FlowOptions{Queue: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(closeEnv)
	for _, c := range FlowCases() {
		for _, clients := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/clients=%d", c.ID, clients), func(b *testing.B) {
				b.ReportAllocs()
				b.ResetTimer()
				m, err := RunFlowCell(context.Background(), env, c, clients, 0, 0, b.N)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(m.Stats.P50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(m.PerStep().Microseconds()), "µs/step")
				b.ReportMetric(m.RoundTrips/FlowSteps, "roundtrips/step")
				b.ReportMetric(m.Statements/FlowSteps, "stmts/step")
			})
		}
	}
}
