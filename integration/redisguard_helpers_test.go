package integration_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/redisguard"
)

// guardTimeout is the guard's Redis timeout in tests that count what reached PostgreSQL: the
// default (100ms) can run out on a loaded host, and the guard then rightly fails open, which
// such a test would count as a replay that missed Redis. Tests of the timeout set their own.
const guardTimeout = 10 * time.Second

// newGuard is redisguard.NewGuard for options that are valid.
func newGuard(t *testing.T, client redisguard.Client, opts *redisguard.GuardOptions) *redisguard.Guard {
	t.Helper()
	g, err := redisguard.NewGuard(client, opts)
	require.NoError(t, err)
	return g
}

// newLocker is redisguard.NewLocker for options that are valid.
func newLocker(t *testing.T, client redisguard.Client, opts *redisguard.LockerOptions) *redisguard.Locker {
	t.Helper()
	l, err := redisguard.NewLocker(client, opts)
	require.NoError(t, err)
	return l
}

// sharedRedis is a client of the shared test Redis; tests on it keep to harness.Prefix keys
// and never stop, pause or flush it.
func sharedRedis(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(harness.RedisURL(t))
	require.NoError(t, err)
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// countingDB counts the transactions opened through it: a request answered from Redis opens
// none.
type countingDB struct {
	db     dedupe.DB
	begins atomic.Int64
}

func (c *countingDB) Begin(ctx context.Context) (pgx.Tx, error) {
	c.begins.Add(1)
	return c.db.Begin(ctx)
}

// errorLog records what a guard reported to OnError.
type errorLog struct {
	mu   sync.Mutex
	errs map[string][]error
}

func (l *errorLog) hook(_ context.Context, op string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.errs == nil {
		l.errs = map[string][]error{}
	}
	l.errs[op] = append(l.errs[op], err)
}

func (l *errorLog) count(op string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs[op])
}

// checkFirstSightingOnce checks a key from n goroutines released together, for several keys
// in turn (each round is a fresh chance for a non-atomic check to let two through): exactly
// one first sighting per key.
func checkFirstSightingOnce(t *testing.T, client redisguard.Client, prefix string, n int) {
	t.Helper()
	g := newGuard(t, client, &redisguard.GuardOptions{Prefix: prefix, Timeout: 5 * time.Second, InFlightTTL: time.Minute})
	warm(n, func() { _, _ = g.Check(context.Background(), dedupe.Request{Scope: "warm-up", Key: "warm-up"}) })
	for round := range 10 {
		req := dedupe.Request{Scope: "orders.create", Key: fmt.Sprintf("same-key-%d", round)}
		states := make([]redisguard.State, n)
		errs := make([]error, n)
		together(n, func(i int) {
			s, err := g.Check(context.Background(), req)
			errs[i] = err
			if err == nil {
				states[i] = s.State
			}
		})
		first := 0
		for i := range n {
			require.NoError(t, errs[i], "caller %d", i)
			switch states[i] {
			case redisguard.StateFirst:
				first++
			case redisguard.StateInProgress:
			default:
				t.Errorf("caller %d: state %v", i, states[i])
			}
		}
		require.Equal(t, 1, first, "exactly one first sighting of %s", req.Key)
	}
}

// consumeOnce consumes a token from n goroutines released together, for several tokens in
// turn: exactly one success per token.
func consumeOnce(t *testing.T, client redisguard.Client, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	tokens := redisguard.NewTokens(client, &redisguard.TokenOptions{Prefix: prefix})
	// Open n connections and load the script first, so the goroutines meet in Redis rather
	// than queue for connection set-up.
	warm(n, func() { _ = tokens.Consume(ctx, "warm-up", strings.Repeat("A", redisguard.TokenLen)) })
	for range 10 {
		tok, err := tokens.Issue(ctx, "checkout:user-42", time.Minute)
		require.NoError(t, err)
		errs := make([]error, n)
		together(n, func(i int) {
			errs[i] = tokens.Consume(ctx, "checkout:user-42", tok)
		})
		ok := 0
		for i, err := range errs {
			if err == nil {
				ok++
				continue
			}
			assert.ErrorIs(t, err, redisguard.ErrTokenUsed, "caller %d", i)
		}
		require.Equal(t, 1, ok, "exactly one consumer succeeds")
	}
}

// counterUnderLock has workers goroutines each add 1 to a shared counter perWorker times,
// each increment a separate read and write under the lock: without mutual exclusion,
// increments are lost. Each holder also records its fencing token at the counter's value,
// so the tokens can be checked to rise in the order the holds happened.
func counterUnderLock(t *testing.T, locker *redisguard.Locker, key string, workers, perWorker int, retry redisguard.RetryStrategy) {
	t.Helper()
	var counter atomic.Int64 // atomic only so the race detector sees no race; the lock is what serialises
	tokens := make([]int64, workers*perWorker)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	errc := make(chan error, workers)
	together(workers, func(_ int) {
		for range perWorker {
			lock, err := locker.Obtain(ctx, key, 10*time.Second, &redisguard.LockOptions{Retry: retry})
			if err != nil {
				errc <- err
				return
			}
			v := counter.Load()
			runtime.Gosched() // widen the read-modify-write window
			if v < int64(len(tokens)) {
				tokens[v] = lock.Token()
			}
			counter.Store(v + 1)
			if err := lock.Release(ctx); err != nil {
				errc <- err
				return
			}
		}
	})
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}
	require.Equal(t, int64(workers*perWorker), counter.Load(), "no increment lost")
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("fencing token of hold %d (%d) is not above hold %d's (%d)", i, tokens[i], i-1, tokens[i-1])
		}
	}
}

// warm runs fn from n goroutines at once: a go-redis client then holds n open connections
// (and the servers have the scripts), so a concurrency test's goroutines really meet in Redis.
func warm(n int, fn func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(fn)
	}
	wg.Wait()
}
