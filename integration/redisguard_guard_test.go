package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/redisguard"
)

// 64 goroutines check one key at once: exactly one first sighting.
func TestGuardFirstSightingConcurrent(t *testing.T) {
	t.Parallel()
	checkFirstSightingOnce(t, sharedRedis(t), harness.Prefix(t), 64)
}

// 64 goroutines run one request through the guard and the dedupe core: the function runs
// once, one row; every other caller is turned away as in progress or gets the same response,
// and only callers that Redis neither turned away nor served open a transaction.
// Afterwards a retry is served from Redis without a transaction.
func TestGuardDoConcurrentSameKey(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 64})
	createOrders(t, db.Pool)
	counted := &countingDB{db: db.Pool}
	g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: harness.Prefix(t), Timeout: 5 * time.Second})
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders.create", Key: "same-key", Fingerprint: dedupe.Fingerprint("POST", "/orders", []byte(`{"n":1}`))}

	const n = 64
	pgtest.Warm(t, db.Pool, n)
	var calls atomic.Int64
	results := make([]dedupe.Result, n)
	errs := make([]error, n)
	together(n, func(i int) {
		results[i], errs[i] = g.Do(context.Background(), d, counted, req, insertOrder(&calls, req.Key))
	})

	var first *dedupe.Response
	inProgress, fromRedis := 0, 0
	for i := range n {
		switch {
		case errors.Is(errs[i], dedupe.ErrInProgress):
			assert.ErrorIs(t, errs[i], dedupe.ErrInProgress, "the core's sentinel matches too")
			var kerr *dedupe.KeyError
			assert.ErrorAs(t, errs[i], &kerr)
			inProgress++
		case errs[i] != nil:
			t.Fatalf("caller %d: %v", i, errs[i])
		case !results[i].Replayed():
			require.Nil(t, first, "a second first execution")
			first = &results[i].Response
		case results[i].Source == dedupe.SourceRedis:
			fromRedis++
		}
	}
	require.NotNil(t, first)
	for i := range n {
		if errs[i] == nil {
			assert.Equal(t, *first, results[i].Response, "caller %d", i)
		}
	}
	assert.Equal(t, int64(1), calls.Load(), "the function ran once")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
	// Which of the others were turned away as in progress, replayed from Redis (they came
	// after the first committed and cached) or sent on to PostgreSQL (Redis said committed)
	// depends on scheduling; what is promised is that the first two kinds left PostgreSQL
	// alone.
	assert.Equal(t, int64(n-inProgress-fromRedis), counted.begins.Load())

	before := counted.begins.Load()
	res, err := g.Do(context.Background(), d, counted, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.Equal(t, dedupe.SourceRedis, res.Source)
	assert.Equal(t, *first, res.Response)
	assert.Equal(t, before, counted.begins.Load(), "a replay from Redis opens no transaction")
}

// A retry of a committed request is replayed from Redis (no transaction, function not run),
// byte for byte; Result.Source tells it apart from a replay from PostgreSQL.
func TestGuardReplayFromRedis(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	counted := &countingDB{db: db.Pool}
	g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: harness.Prefix(t), Timeout: guardTimeout})
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders.create", Key: "k1", Fingerprint: []byte("fp-1")}
	var calls atomic.Int64

	first, err := g.Do(context.Background(), d, counted, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.False(t, first.Replayed())
	assert.NotEqual(t, dedupe.SourceRedis, first.Source)
	assert.Equal(t, int64(1), counted.begins.Load())

	again, err := g.Do(context.Background(), d, counted, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, dedupe.SourceRedis, again.Source)
	assert.Zero(t, again.Attempts)
	assert.Equal(t, first.Response, again.Response)
	assert.Equal(t, int64(1), counted.begins.Load(), "PostgreSQL not touched")
	assert.Equal(t, int64(1), calls.Load())
}

// A cached response is never given to a request with another fingerprint: PostgreSQL is
// asked and reports the mismatch.
func TestGuardFingerprintMismatchNotReplayed(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	counted := &countingDB{db: db.Pool}
	g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: harness.Prefix(t), Timeout: guardTimeout})
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders.create", Key: "k1", Fingerprint: []byte("fp-1")}
	var calls atomic.Int64
	_, err := g.Do(context.Background(), d, counted, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)

	other := req
	other.Fingerprint = []byte("fp-2")
	s, err := g.Check(context.Background(), other)
	require.NoError(t, err)
	assert.Equal(t, redisguard.StateCommitted, s.State)
	assert.Zero(t, s.Response)

	res, err := g.Do(context.Background(), d, counted, other, insertOrder(&calls, req.Key))
	require.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)
	assert.Zero(t, res.Response)
	assert.Equal(t, int64(2), counted.begins.Load(), "PostgreSQL decided")
	assert.Equal(t, int64(1), calls.Load())

	// An unfingerprinted request does not match a fingerprinted one either.
	other.Fingerprint = nil
	_, err = g.Do(context.Background(), d, counted, other, insertOrder(&calls, req.Key))
	require.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)
}

// While the first request runs, a duplicate is turned away by Redis at once, without a
// transaction; once it commits, the duplicate is replayed from Redis.
func TestGuardInProgress(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	counted := &countingDB{db: db.Pool}
	g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: harness.Prefix(t), Timeout: guardTimeout})
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders.create", Key: "slow"}

	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := g.Do(context.Background(), d, counted, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			close(entered)
			<-release
			return insertOrder(nil, req.Key)(ctx, tx)
		})
		done <- err
	}()
	<-entered

	_, err := g.Do(context.Background(), d, counted, req, insertOrder(nil, req.Key))
	require.ErrorIs(t, err, dedupe.ErrInProgress)
	require.ErrorIs(t, err, dedupe.ErrInProgress)
	assert.Equal(t, int64(1), counted.begins.Load(), "only the first request's transaction")

	close(release)
	require.NoError(t, <-done)
	res, err := g.Do(context.Background(), d, counted, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	assert.Equal(t, dedupe.SourceRedis, res.Source)
	assert.Equal(t, 201, res.Response.Status)
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// A failed (or panicking) first request releases its mark: the retry runs at once instead of
// being turned away as in progress until InFlightTTL.
func TestGuardReleasesAfterFailure(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: harness.Prefix(t), InFlightTTL: time.Hour, Timeout: guardTimeout})
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders.create", Key: "fails-once"}
	errPayment := errors.New("payment provider unavailable")

	_, err := g.Do(context.Background(), d, db.Pool, req, func(context.Context, pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{}, errPayment
	})
	require.ErrorIs(t, err, errPayment)

	func() {
		defer func() { assert.Equal(t, "boom", recover()) }()
		_, _ = g.Do(context.Background(), d, db.Pool, req, func(context.Context, pgx.Tx) (dedupe.Response, error) {
			panic("boom")
		})
	}()

	var calls atomic.Int64
	res, err := g.Do(context.Background(), d, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.False(t, res.Replayed())
	assert.Equal(t, int64(1), calls.Load())
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// A request whose mark expired while it ran cannot release or overwrite the mark of the
// request that came after it.
func TestGuardReleaseIsOwnerChecked(t *testing.T) {
	t.Parallel()
	ttl := 150 * time.Millisecond
	prefix := harness.Prefix(t)
	// The late request's marks expire fast; the next request's outlive the test, however slow
	// the host (with one short TTL for both, the next mark expired too before it was checked).
	g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: prefix, InFlightTTL: ttl, Timeout: guardTimeout})
	long := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: prefix, InFlightTTL: time.Hour, Timeout: guardTimeout})
	ctx := context.Background()
	req := dedupe.Request{Scope: "orders.create", Key: "k"}

	late, err := g.Check(ctx, req)
	require.NoError(t, err)
	require.Equal(t, redisguard.StateFirst, late.State)
	time.Sleep(ttl + 50*time.Millisecond) // let the first mark expire

	next, err := long.Check(ctx, req)
	require.NoError(t, err)
	require.Equal(t, redisguard.StateFirst, next.State, "the expired mark no longer counts")

	require.NoError(t, late.Release(ctx))
	s, err := g.Check(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, redisguard.StateInProgress, s.State, "the late release left the new mark alone")

	late2, err := g.Check(ctx, dedupe.Request{Scope: "orders.create", Key: "k2"})
	require.NoError(t, err)
	time.Sleep(ttl + 50*time.Millisecond)
	next2, err := long.Check(ctx, dedupe.Request{Scope: "orders.create", Key: "k2"})
	require.NoError(t, err)
	require.Equal(t, redisguard.StateFirst, next2.State)
	require.NoError(t, late2.Commit(ctx, dedupe.Result{Response: dedupe.Response{Status: 201}}))
	s, err = g.Check(ctx, dedupe.Request{Scope: "orders.create", Key: "k2"})
	require.NoError(t, err)
	assert.Equal(t, redisguard.StateInProgress, s.State, "the late commit did not overwrite the new mark")
}

// A response over MaxCachedBytes is recorded as committed without its body: the retry is not
// turned away, and gets the response from PostgreSQL.
func TestGuardLargeResponseFallsThrough(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	counted := &countingDB{db: db.Pool}
	g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: harness.Prefix(t), MaxCachedBytes: 1024, Timeout: guardTimeout})
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "reports.create", Key: "big"}
	body := make([]byte, 4096)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	fn := func(context.Context, pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{Status: 200, Body: body}, nil
	}

	_, err := g.Do(context.Background(), d, counted, req, fn)
	require.NoError(t, err)
	s, err := g.Check(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, redisguard.StateCommitted, s.State)

	res, err := g.Do(context.Background(), d, counted, req, fn)
	require.NoError(t, err)
	assert.True(t, res.Replayed())
	assert.NotEqual(t, dedupe.SourceRedis, res.Source)
	assert.Equal(t, body, res.Response.Body)
	assert.Equal(t, int64(2), counted.begins.Load())
}

// The cached entry lives no longer than the request's TTL, so Redis forgets a key no later
// than PostgreSQL does; the in-flight mark has the InFlightTTL.
func TestGuardEntryTTLs(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	rdb := sharedRedis(t)
	prefix := harness.Prefix(t)
	g := newGuard(t, rdb, &redisguard.GuardOptions{Prefix: prefix, CacheTTL: time.Hour, InFlightTTL: 30 * time.Second, Timeout: guardTimeout})
	ctx := context.Background()
	pttl := func() time.Duration {
		keys, err := rdb.Keys(ctx, prefix+"*").Result()
		require.NoError(t, err)
		require.Len(t, keys, 1)
		d, err := rdb.PTTL(ctx, keys[0]).Result()
		require.NoError(t, err)
		return d
	}
	req := dedupe.Request{Scope: "s", Key: "k", TTL: 2 * time.Second}
	_, err := g.Do(ctx, dedupe.New(nil), db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		d := pttl()
		// 30s at the check; a loaded host may take seconds to get here.
		assert.Greater(t, d, 20*time.Second, "in-flight mark")
		assert.LessOrEqual(t, d, 30*time.Second)
		return dedupe.Response{Status: 201}, nil
	})
	require.NoError(t, err)
	d := pttl()
	assert.Positive(t, d)
	assert.LessOrEqual(t, d, 2*time.Second, "committed entry bounded by the request TTL")
}

// The client goes away (context cancelled) after the request committed: the guard still
// records the commit, so the client's retry is replayed rather than turned away.
func TestGuardCommitsAfterCancel(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: harness.Prefix(t), Timeout: guardTimeout})
	req := dedupe.Request{Scope: "s", Key: "k"}
	ctx, cancel := context.WithCancel(context.Background())
	runner := runnerFunc(func(ctx context.Context, db dedupe.DB, req dedupe.Request, fn dedupe.Func) (dedupe.Result, error) {
		res, err := dedupe.New(nil).Do(ctx, db, req, fn)
		cancel() // the client disconnects just after the commit
		return res, err
	})
	_, err := g.Do(ctx, runner, db.Pool, req, func(context.Context, pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{Status: 201, Body: []byte("ok")}, nil
	})
	require.NoError(t, err)
	s, err := g.Check(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, redisguard.StateCached, s.State)
	assert.Equal(t, []byte("ok"), s.Response.Body)
}

type runnerFunc func(ctx context.Context, db dedupe.DB, req dedupe.Request, fn dedupe.Func) (dedupe.Result, error)

func (f runnerFunc) Do(ctx context.Context, db dedupe.DB, req dedupe.Request, fn dedupe.Func) (dedupe.Result, error) {
	return f(ctx, db, req, fn)
}

// Redis is stopped while requests run, and restarted empty: the guard fails open, and the
// dedupe core still yields exactly one effect per key, every response of a key equal.
func TestRedisStoppedMidRunGuardFailsOpen(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	db := harness.DB(t, &pgtest.Options{MaxConns: 16})
	createOrders(t, db.Pool)
	var errs errorLog
	g := newGuard(t, srv.Client(), &redisguard.GuardOptions{Timeout: 200 * time.Millisecond, OnError: errs.hook})
	d := dedupe.New(nil)

	const keys, perKey, workers = 60, 5, 16
	order := make([]int, 0, keys*perKey)
	for k := range keys {
		for range perKey {
			order = append(order, k)
		}
	}
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	stopAt, restartAt := len(order)/3, 2*len(order)/3
	stopped, restarted := make(chan struct{}), make(chan struct{})

	pgtest.Warm(t, db.Pool, workers)
	var mu sync.Mutex
	responses := make([][]dedupe.Response, keys)
	var next, fromRedis, inProgress atomic.Int64
	var calls atomic.Int64
	errc := make(chan error, workers)
	together(workers, func(_ int) {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(order) {
				return
			}
			switch i {
			case stopAt:
				srv.Stop()
				close(stopped)
			case restartAt:
				<-stopped
				srv.Start()
				close(restarted)
			}
			key := fmt.Sprintf("key-%03d", order[i])
			res, err := g.Do(context.Background(), d, db.Pool, dedupe.Request{Scope: "orders", Key: key}, insertOrder(&calls, key))
			if errors.Is(err, dedupe.ErrInProgress) {
				inProgress.Add(1)
				continue
			}
			if err != nil {
				errc <- err
				return
			}
			if res.Source == dedupe.SourceRedis {
				fromRedis.Add(1)
			}
			mu.Lock()
			responses[order[i]] = append(responses[order[i]], res.Response)
			mu.Unlock()
		}
	})
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}
	<-restarted

	assert.Equal(t, keys, count(t, db.Pool, `SELECT count(*) FROM orders`), "one effect per key")
	assert.Equal(t, keys, count(t, db.Pool, `SELECT count(DISTINCT request_key) FROM orders`))
	assert.Equal(t, int64(keys), calls.Load(), "the function ran once per key")
	for k := range keys {
		for _, r := range responses[k] {
			assert.Equal(t, responses[k][0], r, "key %d", k)
		}
	}
	assert.Positive(t, errs.count("check"), "failures while Redis was down were reported")
	assert.Positive(t, fromRedis.Load(), "Redis served replays while it was up")
	t.Logf("%d requests: %d from Redis, %d turned away in progress, %d check failures tolerated",
		len(order), fromRedis.Load(), inProgress.Load(), errs.count("check"))
}

// FailClosed refuses requests while Redis is down, with ErrUnavailable, and runs nothing.
func TestRedisDownGuardFailsClosed(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	g := newGuard(t, srv.Client(), &redisguard.GuardOptions{Timeout: 100 * time.Millisecond, Policy: redisguard.FailClosed})
	srv.Stop()
	var calls atomic.Int64
	_, err := g.Do(context.Background(), dedupe.New(nil), db.Pool, dedupe.Request{Scope: "orders", Key: "k"}, insertOrder(&calls, "k"))
	require.ErrorIs(t, err, redisguard.ErrUnavailable)
	assert.Zero(t, calls.Load())
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// A Redis that stops answering (CLIENT PAUSE) costs one Timeout: the guard fails open to
// PostgreSQL, which runs the request once; FailClosed refuses instead.
func TestRedisSlowGuardTimesOut(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	ctx := context.Background()
	admin := srv.Client()
	var errs errorLog
	timeout := 100 * time.Millisecond
	open := newGuard(t, srv.Client(), &redisguard.GuardOptions{Timeout: timeout, OnError: errs.hook})
	closed := newGuard(t, srv.Client(), &redisguard.GuardOptions{Timeout: timeout, Policy: redisguard.FailClosed})
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders", Key: "k"}
	var calls atomic.Int64

	// Load the scripts while Redis answers, so the paused call is one round trip.
	_, err := open.Check(ctx, dedupe.Request{Scope: "warm", Key: "up"})
	require.NoError(t, err)
	pause := 20 * time.Second // far beyond what a loaded host adds to the request
	require.NoError(t, admin.Do(ctx, "CLIENT", "PAUSE", strconv.FormatInt(pause.Milliseconds(), 10), "ALL").Err())

	began := time.Now()
	res, err := open.Do(ctx, d, db.Pool, req, insertOrder(&calls, req.Key))
	took := time.Since(began)
	require.NoError(t, err)
	assert.False(t, res.Replayed())
	assert.Less(t, took, pause/4, "bounded by the timeouts, not by the pause")
	assert.Equal(t, 1, errs.count("check"))
	assert.ErrorIs(t, errs.errs["check"][0], redisguard.ErrUnavailable)
	assert.ErrorIs(t, errs.errs["check"][0], context.DeadlineExceeded)

	_, err = closed.Do(ctx, d, db.Pool, dedupe.Request{Scope: "orders", Key: "k2"}, insertOrder(&calls, "k2"))
	require.ErrorIs(t, err, redisguard.ErrUnavailable)
	assert.ErrorIs(t, err, dedupe.ErrUnavailable, "the outcome the HTTP middleware answers with 503")
	assert.Equal(t, int64(1), calls.Load())
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
	t.Logf("fail-open request took %v with Redis paused (Timeout %v)", took, timeout)
}

// Redis loses the key (FLUSHALL, or a failover that lost it): the retry is a "first"
// sighting for Redis, and PostgreSQL replays it without running the function again.
func TestRedisLostKeyReplayedByPostgres(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	ctx := context.Background()
	rdb := srv.Client()
	g := newGuard(t, rdb, &redisguard.GuardOptions{Timeout: guardTimeout})
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders", Key: "k", Fingerprint: []byte("fp")}
	var calls atomic.Int64

	first, err := g.Do(ctx, d, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	require.NoError(t, rdb.FlushAll(ctx).Err())

	again, err := g.Do(ctx, d, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.NotEqual(t, dedupe.SourceRedis, again.Source, "PostgreSQL replayed it")
	assert.Equal(t, first.Response, again.Response)

	third, err := g.Do(ctx, d, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.Equal(t, dedupe.SourceRedis, third.Source, "the replay was cached again")
	assert.Equal(t, first.Response, third.Response)
	assert.Equal(t, int64(1), calls.Load())
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// Inside the caller's transaction the guard cannot know whether the key will commit: the
// caller rolls back after Do returned, so a retry must run again rather than get a cached
// response for a write that never happened.
func TestGuardJoinedTransactionIsNotCached(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: harness.Prefix(t), InFlightTTL: time.Hour, Timeout: 5 * time.Second})
	d := dedupe.New(nil)
	ctx := context.Background()
	req := dedupe.Request{Scope: "orders.create", Key: "joined"}
	var calls atomic.Int64

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	res, err := g.Do(ctx, d, tx, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	require.False(t, res.Replayed())
	require.NoError(t, tx.Rollback(ctx))

	s, err := g.Check(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, redisguard.StateFirst, s.State, "the mark was released, not committed")
	require.NoError(t, s.Release(ctx))

	res, err = g.Do(ctx, d, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.False(t, res.Replayed(), "the retry ran: the rolled-back write was not replayed")
	assert.NotEqual(t, dedupe.SourceRedis, res.Source)
	assert.Equal(t, int64(2), calls.Load())
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}
