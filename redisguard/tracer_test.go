package redisguard_test

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/redisguard"
)

type recTracer struct {
	mu     sync.Mutex
	starts []dedupe.TraceDoStartData
	ends   []dedupe.TraceDoEndData
}

func (r *recTracer) TraceDoStart(ctx context.Context, data dedupe.TraceDoStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, data)
	return ctx
}

func (r *recTracer) TraceDoEnd(_ context.Context, data dedupe.TraceDoEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, data)
}

func (r *recTracer) take(t *testing.T) ([]dedupe.TraceDoStartData, []dedupe.TraceDoEndData) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Len(t, r.ends, len(r.starts), "every start has its end")
	s, e := r.starts, r.ends
	r.starts, r.ends = nil, nil
	return s, e
}

func TestGuardTracer(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t, pgtest.URL(t), nil)
	rdb := newRedis()
	t.Cleanup(func() { _ = rdb.Close() })
	tr := &recTracer{}
	guard, err := redisguard.NewGuard(rdb, &redisguard.GuardOptions{Timeout: time.Second, Tracer: tr, TraceKeys: true})
	require.NoError(t, err)
	deduper := dedupe.New(&dedupe.Options{Tracer: tr})
	key := rand.Text()
	req := dedupe.Request{Scope: "trace", Key: key, Fingerprint: []byte("a")}
	fn := func(context.Context, pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{Status: 201}, nil
	}

	// First sighting: the guard's span encloses the deduper's; both see the claim's wait.
	_, err = guard.Do(ctx, deduper, db.Pool, req, fn)
	require.NoError(t, err)
	starts, ends := tr.take(t)
	require.Len(t, starts, 2)
	assert.Equal(t, dedupe.TraceDoStartData{Component: "redisguard", Operation: "do", Scope: "trace", KeyHash: dedupe.KeyHash(key), Key: key}, starts[0])
	assert.Equal(t, "dedupe", starts[1].Component)
	assert.Empty(t, starts[1].Key, "the deduper's TraceKeys is off")
	inner, outer := ends[0], ends[1]
	assert.Equal(t, dedupe.OutcomeExecuted, outer.Outcome)
	assert.Equal(t, 1, outer.Attempts)
	assert.Positive(t, inner.Wait)
	assert.Equal(t, inner.Wait, outer.Wait, "the guard's span counts the claim's wait")

	// Retry: replayed from Redis, no transaction, no deduper span.
	_, err = guard.Do(ctx, deduper, db.Pool, req, fn)
	require.NoError(t, err)
	_, ends = tr.take(t)
	require.Len(t, ends, 1)
	assert.Equal(t, dedupe.OutcomeReplayed, ends[0].Outcome)
	assert.Equal(t, dedupe.SourceRedis, ends[0].Source)
	assert.Zero(t, ends[0].Attempts)
	assert.Zero(t, ends[0].Wait)
	assert.Equal(t, 201, ends[0].Status)

	// Other payload: Redis says committed, PostgreSQL refuses it.
	req.Fingerprint = []byte("b")
	_, err = guard.Do(ctx, deduper, db.Pool, req, fn)
	require.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)
	_, ends = tr.take(t)
	require.Len(t, ends, 2)
	assert.Equal(t, dedupe.OutcomeMismatch, ends[1].Outcome)

	// A key marked in Redis by a running request: in progress, PostgreSQL not asked.
	busy := dedupe.Request{Scope: "trace", Key: rand.Text()}
	s, err := guard.Check(ctx, busy)
	require.NoError(t, err)
	require.Equal(t, redisguard.StateFirst, s.State)
	t.Cleanup(func() { _ = s.Release(context.Background()) })
	_, err = guard.Do(ctx, deduper, db.Pool, busy, fn)
	require.ErrorIs(t, err, dedupe.ErrInProgress)
	_, ends = tr.take(t)
	require.Len(t, ends, 1)
	assert.Equal(t, dedupe.OutcomeInProgress, ends[0].Outcome)
	assert.Equal(t, err, ends[0].Err)
}

func TestLockerTracer(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis()
	t.Cleanup(func() { _ = rdb.Close() })
	tr := &recTracer{}
	locker, err := redisguard.NewLocker(rdb, &redisguard.LockerOptions{Tracer: tr})
	require.NoError(t, err)
	key := rand.Text()

	lock, err := locker.Obtain(ctx, key, 10*time.Second, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lock.Release(context.Background()) })
	starts, ends := tr.take(t)
	require.Len(t, ends, 1)
	assert.Equal(t, dedupe.TraceDoStartData{Component: "redisguard", Operation: "obtain", KeyHash: dedupe.KeyHash(key)}, starts[0])
	assert.Equal(t, dedupe.OutcomeObtained, ends[0].Outcome)
	assert.Equal(t, ends[0].Duration, ends[0].Wait)

	_, err = locker.Obtain(ctx, key, 10*time.Second, nil)
	require.ErrorIs(t, err, redisguard.ErrNotObtained)
	_, ends = tr.take(t)
	require.Len(t, ends, 1)
	assert.Equal(t, dedupe.OutcomeNotObtained, ends[0].Outcome)
	assert.Equal(t, err, ends[0].Err)

	_, err = locker.Obtain(ctx, key, 0, nil)
	require.ErrorIs(t, err, redisguard.ErrInvalid)
	_, ends = tr.take(t)
	require.Len(t, ends, 1)
	assert.Equal(t, dedupe.OutcomeInvalid, ends[0].Outcome)
}
