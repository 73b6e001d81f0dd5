package volume_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/integration/volume"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// BenchmarkClaim is the go test -bench form of benchvolume's throughput table, at a size that
// fits a benchmark run (-rows of benchvolume goes to 10M): one op is one claim of a new key
// (dedupe.Do, trivial function) by 8 clients, on each layout, empty and with 200k keys.
func BenchmarkClaim(b *testing.B) {
	const keys = 200_000
	for _, layout := range []dedupe.Layout{dedupe.LayoutTable, dedupe.LayoutGenerations} {
		for _, full := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/keys=%d", layout, map[bool]int{false: 0, true: keys}[full]), func(b *testing.B) {
				db := harness.DB(b, &pgtest.Options{MaxConns: 8})
				d := dedupe.New(&dedupe.Options{Layout: layout})
				if full {
					table := "dedupe_keys"
					if layout == dedupe.LayoutGenerations {
						table = "dedupe_keys_g2" // the previous generation of generation 0
					}
					if err := volume.Fill(context.Background(), db.Pool, db.Schema, table, 1, keys, true, true); err != nil {
						b.Fatal(err)
					}
				}
				pgtest.Warm(b, db.Pool, 8)
				var seed atomic.Uint64
				b.SetParallelism(4) // 4 per GOMAXPROCS: 8 clients on 2 cores
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					rng := rand.New(rand.NewPCG(seed.Add(1), 7))
					for pb.Next() {
						if err := volume.Claim(context.Background(), d, db.Pool, rng); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
