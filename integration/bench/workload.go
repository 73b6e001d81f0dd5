// Package bench measures the toolkit against the plain transaction, common hand-rolled
// approaches and a Stripe-style design, on one machine in one run. Its workloads are driven
// both by `go test -bench` (bench_test.go, benchstat-friendly) and by cmd/benchtable, which
// prints the comparison table in README.md.
package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrInProgress is what an approach returns when it turned a request away because a
// concurrent one with the same key was running (a 409 in HTTP terms).
var ErrInProgress = errors.New("bench: in progress")

// Send is one request: a key and its payload. Dup marks the second send of a concurrent
// duplicate pair.
type Send struct {
	Key     string
	Payload []byte
	pair    *sync.WaitGroup // both sends of a duplicate pair wait here, then go at once
}

// Stats is what one measured run saw.
type Stats struct {
	Sends      int
	InProgress int // sends turned away as in progress
	Errors     int
	Elapsed    time.Duration
	P50, P99   time.Duration
	FirstErr   error
}

// OpsPerSec is completed sends per second.
func (s Stats) OpsPerSec() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sends) / s.Elapsed.Seconds()
}

// Keys generates the sends of a run: new keys with a prefix, of which dupShare are sent
// twice at the same moment by two clients (when clients > 1).
type Keys struct {
	Prefix   string
	DupShare float64 // 0.1 = 10% of logical requests are concurrent duplicate pairs
	// RetryShare of the sends repeat a key sent earlier (a client retrying after its answer
	// was lost), once enough keys exist.
	RetryShare float64
	Reuse      []string
	n          atomic.Int64
	mu         sync.Mutex
	pending    *Send
	sent       []string // recent keys, for retries
}

// Next returns the next send. With Reuse set, it cycles through those keys (replay runs).
func (k *Keys) Next() Send {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pending != nil {
		s := *k.pending
		k.pending = nil
		return s
	}
	i := k.n.Add(1)
	if k.RetryShare > 0 && len(k.sent) > 100 && i%int64(1/k.RetryShare) == 1 {
		key := k.sent[int(i/7)%len(k.sent)]
		return Send{Key: key, Payload: payload(key)}
	}
	if len(k.Reuse) > 0 {
		key := k.Reuse[int(i)%len(k.Reuse)]
		return Send{Key: key, Payload: payload(key)}
	}
	key := fmt.Sprintf("%s-%d", k.Prefix, i)
	s := Send{Key: key, Payload: payload(key)}
	if k.RetryShare > 0 {
		if len(k.sent) < 10000 {
			k.sent = append(k.sent, key)
		} else {
			k.sent[int(i)%len(k.sent)] = key
		}
	}
	// Every 1/DupShare-th logical request becomes a pair sent at once by two clients.
	if k.DupShare > 0 && i%int64(1/k.DupShare) == 0 {
		wg := &sync.WaitGroup{}
		wg.Add(2)
		s.pair = wg
		twin := s
		k.pending = &twin
	}
	return s
}

// abandon releases a pending twin nobody will send (the run is ending), so the client
// waiting for it at the pair barrier goes on alone.
func (k *Keys) abandon() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pending != nil {
		k.pending.pair.Done()
		k.pending = nil
	}
}

func payload(key string) []byte { return []byte(`{"sku":"book","qty":1,"ref":"` + key + `"}`) }

// Do is one approach handling one send.
type Do func(ctx context.Context, s Send) error

// Run drives do with clients goroutines for warmup (discarded) and then for duration, or for
// exactly n sends when n > 0 (go test -bench), and returns what it saw.
func Run(ctx context.Context, clients int, warmup, duration time.Duration, n int, keys *Keys, do Do) Stats {
	if warmup > 0 {
		drive(ctx, clients, warmup, 0, keys, do)
	}
	return drive(ctx, clients, duration, n, keys, do)
}

func drive(ctx context.Context, clients int, duration time.Duration, n int, keys *Keys, do Do) Stats {
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		st        Stats
		latencies []time.Duration
		left      atomic.Int64
	)
	left.Store(int64(n))
	deadline := time.Now().Add(duration)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			defer keys.abandon()
			var lat []time.Duration
			var sends, busy, errs int
			var firstErr error
			for ctx.Err() == nil {
				if n > 0 {
					if left.Add(-1) < 0 {
						break
					}
				} else if time.Now().After(deadline) {
					break
				}
				s := keys.Next()
				if s.pair != nil && clients > 1 {
					s.pair.Done()
					s.pair.Wait()
				}
				t0 := time.Now()
				err := do(ctx, s)
				lat = append(lat, time.Since(t0))
				sends++
				switch {
				case err == nil:
				case errors.Is(err, ErrInProgress):
					busy++
				default:
					errs++
					if firstErr == nil {
						firstErr = err
					}
				}
			}
			mu.Lock()
			latencies = append(latencies, lat...)
			st.Sends += sends
			st.InProgress += busy
			st.Errors += errs
			if st.FirstErr == nil {
				st.FirstErr = firstErr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	st.Elapsed = time.Since(start)
	slices.Sort(latencies)
	st.P50 = percentile(latencies, 0.50)
	st.P99 = percentile(latencies, 0.99)
	return st
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}
