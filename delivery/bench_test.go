package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgonce/pgonce/delivery/internal/deliverybench"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// BenchmarkEnqueue reports business transactions per second alone and with each outbox, at
// 8 clients (b.N is unused: each case runs for a fixed time; see tx/s). For the table with
// ratios and interleaved rounds: make bench-delivery.
func BenchmarkEnqueue(b *testing.B) {
	env := benchEnv(b)
	for _, c := range deliverybench.TxCases() {
		b.Run(c.ID, func(b *testing.B) {
			ctx := context.Background()
			if err := env.Reset(ctx); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				v, err := env.RunTx(ctx, c, 8, 500*time.Millisecond)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(v, "tx/s")
			}
		})
	}
}

// BenchmarkDeliver reports messages per second delivered (2,000 per iteration).
func BenchmarkDeliver(b *testing.B) {
	env := benchEnv(b)
	for _, c := range deliverybench.DeliverCases() {
		b.Run(c.ID, func(b *testing.B) {
			for b.Loop() {
				v, err := env.RunDeliver(context.Background(), c, 2000)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(v, "msgs/s")
			}
		})
	}
}

func benchEnv(b *testing.B) *deliverybench.Env {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, drop, err := deliverybench.Open(ctx, pgtest.URL(b), 48)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(drop)
	return env
}
