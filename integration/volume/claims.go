package volume

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
)

// Claim is the benchmark's unit of work: Do with a new random key and a trivial function,
// so what is measured is the claim, the stored response and the commit.
func Claim(ctx context.Context, d *dedupe.Deduper, pool *pgxpool.Pool, rng *rand.Rand) error {
	var b [16]byte
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	_, err := d.Do(ctx, pool, dedupe.Request{Scope: Scope, Key: hex.EncodeToString(b[:])}, trivial)
	return err
}

func trivial(context.Context, pgx.Tx) (dedupe.Response, error) {
	return dedupe.Response{Status: 201, Body: []byte(`{"id":1}`)}, nil
}

// Latencies are the durations of the claims of a run, with when each started.
type Latencies struct {
	mu    sync.Mutex
	Start []time.Time
	Took  []time.Duration
	Errs  int
}

func (l *Latencies) add(start time.Time, took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.Errs++
		return
	}
	l.Start = append(l.Start, start)
	l.Took = append(l.Took, took)
}

// Window returns the latencies of the claims in flight at some moment of [from, to).
func (l *Latencies) Window(from, to time.Time) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Duration
	for i, s := range l.Start {
		if s.Before(to) && s.Add(l.Took[i]).After(from) {
			out = append(out, l.Took[i])
		}
	}
	return out
}

// Percentile returns the q-quantile (0..1) of ds, 0 for none.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// Run keeps clients goroutines claiming new keys until ctx ends or stop is closed, and
// records every claim. It returns when all have stopped.
func Run(ctx context.Context, d *dedupe.Deduper, pool *pgxpool.Pool, clients int, stop <-chan struct{}) *Latencies {
	l := &Latencies{}
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				start := time.Now()
				err := Claim(ctx, d, pool, rng)
				l.add(start, time.Since(start), err)
			}
		})
	}
	wg.Wait()
	return l
}

// Throughput runs clients for d after warmup and returns claims per second and the p99.
func Throughput(ctx context.Context, dd *dedupe.Deduper, pool *pgxpool.Pool, clients int, warmup, d time.Duration) (float64, time.Duration, int) {
	stop := make(chan struct{})
	begin := time.Now()
	from := begin.Add(warmup)
	to := from.Add(d)
	timer := time.AfterFunc(warmup+d, func() { close(stop) })
	defer timer.Stop()
	l := Run(ctx, dd, pool, clients, stop)
	// Claims that both started and finished inside the measured window.
	n := 0
	var took []time.Duration
	for i, s := range l.Start {
		if !s.Before(from) && s.Add(l.Took[i]).Before(to) {
			n++
			took = append(took, l.Took[i])
		}
	}
	return float64(n) / d.Seconds(), Percentile(took, 0.99), l.Errs
}
