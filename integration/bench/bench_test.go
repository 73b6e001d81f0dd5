package bench

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/pgonce/pgonce/integration/harness"
)

// BenchmarkCompare runs every case at 1, 8 and 32 clients: one op is one request (create
// cases: 10% of logical requests are sent twice at once), reported with latency percentiles,
// duplicate effects and attempts per success. `go test -bench Compare -benchmem` output
// feeds benchstat.
func BenchmarkCompare(b *testing.B) {
	env, drop, err := Open(context.Background(), harness.PostgresURL(b), harness.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(drop)
	for _, c := range Cases() {
		for _, clients := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/%s/clients=%d", c.Group, c.ID, clients), func(b *testing.B) {
				cell, err := PrepareCell(context.Background(), env, c, clients)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				m, err := cell.Run(context.Background(), 0, 0, b.N)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(m.Stats.P50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(m.Stats.P99.Microseconds()), "p99-µs")
				if c.Group == "create" {
					b.ReportMetric(float64(m.Dups), "dup-effects")
				}
				if m.Attempts > 0 {
					b.ReportMetric(m.Attempts, "attempts/success")
				}
			})
		}
	}
}

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
