package redisguard_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/redisguard"
)

func benchGuard(tb testing.TB) (*redisguard.Guard, *redis.Client) {
	tb.Helper()
	opt, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		tb.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { _ = rdb.Close() })
	// A prefix of its own per run, so every check is a first sighting (marks live 30s).
	prefix := "allocs:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	g, err := redisguard.NewGuard(rdb, &redisguard.GuardOptions{Prefix: prefix})
	if err != nil {
		tb.Fatal(err)
	}
	return g, rdb
}

// A first-sighting check stays within its allocation budget (the target: 20), so
// the guard costs about what a bare INCR does.
func TestCheckAllocations(t *testing.T) {
	g, _ := benchGuard(t)
	ctx := context.Background()
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		i++
		if _, err := g.Check(ctx, dedupe.Request{Scope: "allocs", Key: keys[i%len(keys)]}); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f allocations per Check", allocs)
	if allocs > 20 {
		t.Errorf("Check allocates %.0f times, the budget is 20", allocs)
	}
}

// BenchmarkCheck is one first-sighting Check against a bare INCR, side by side (run with
// -benchmem).
func BenchmarkCheck(b *testing.B) {
	g, rdb := benchGuard(b)
	ctx := context.Background()
	b.Run("Check", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := g.Check(ctx, dedupe.Request{Scope: "bench", Key: strconv.Itoa(i)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("INCR", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if err := rdb.Incr(ctx, "allocs:incr:"+strconv.Itoa(i)).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
