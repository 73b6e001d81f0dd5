package dedupe_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// recTracer records every call; the context TraceDoStart returns carries a span id.
type recTracer struct {
	mu     sync.Mutex
	starts []dedupe.TraceDoStartData
	ends   []dedupe.TraceDoEndData
	endIDs []any
}

type spanKey struct{}

func (r *recTracer) TraceDoStart(ctx context.Context, data dedupe.TraceDoStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, data)
	return context.WithValue(ctx, spanKey{}, len(r.starts))
}

func (r *recTracer) TraceDoEnd(ctx context.Context, data dedupe.TraceDoEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, data)
	r.endIDs = append(r.endIDs, ctx.Value(spanKey{}))
}

func (r *recTracer) last(t *testing.T) (dedupe.TraceDoStartData, dedupe.TraceDoEndData) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.ends)
	require.Len(t, r.ends, len(r.starts), "every start has its end")
	return r.starts[len(r.starts)-1], r.ends[len(r.ends)-1]
}

func TestTracerDo(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t, pgtest.URL(t), nil)
	tr := &recTracer{}
	d := dedupe.New(&dedupe.Options{Tracer: tr})
	req := dedupe.Request{Scope: "trace", Key: "k1", Fingerprint: []byte("a")}
	var fnSpan any
	fn := func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		fnSpan = ctx.Value(spanKey{})
		return dedupe.Response{Status: 201}, nil
	}

	_, err := d.Do(ctx, db.Pool, req, fn)
	require.NoError(t, err)
	start, end := tr.last(t)
	assert.Equal(t, dedupe.TraceDoStartData{Component: "dedupe", Operation: "do", Scope: "trace", KeyHash: dedupe.KeyHash("k1")}, start)
	assert.Equal(t, dedupe.OutcomeExecuted, end.Outcome)
	assert.Equal(t, dedupe.SourceExecuted, end.Source)
	assert.Equal(t, 1, end.Attempts)
	assert.Equal(t, 201, end.Status)
	assert.Positive(t, end.Wait, "the claim's round trip")
	assert.GreaterOrEqual(t, end.Duration, end.Wait)
	assert.NoError(t, end.Err)
	assert.Equal(t, 1, fnSpan, "fn runs with the context TraceDoStart returned")
	assert.Equal(t, 1, tr.endIDs[0], "TraceDoEnd gets the context TraceDoStart returned")

	_, err = d.Do(ctx, db.Pool, req, fn)
	require.NoError(t, err)
	_, end = tr.last(t)
	assert.Equal(t, dedupe.OutcomeReplayed, end.Outcome)
	assert.Equal(t, dedupe.SourcePostgres, end.Source)
	assert.Equal(t, 201, end.Status)

	req.Fingerprint = []byte("b")
	_, err = d.Do(ctx, db.Pool, req, fn)
	require.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)
	_, end = tr.last(t)
	assert.Equal(t, dedupe.OutcomeMismatch, end.Outcome)
	assert.Equal(t, err, end.Err)
	assert.Equal(t, 0, end.Status)

	_, err = d.Do(ctx, db.Pool, dedupe.Request{Scope: "trace"}, fn)
	require.ErrorIs(t, err, dedupe.ErrInvalidKey)
	_, end = tr.last(t)
	assert.Equal(t, dedupe.OutcomeInvalid, end.Outcome)
	assert.Zero(t, end.Wait, "no claim ran")

	boom := errors.New("boom")
	_, err = d.Do(ctx, db.Pool, dedupe.Request{Scope: "trace", Key: "k2"}, func(context.Context, pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{}, boom
	})
	require.ErrorIs(t, err, boom)
	_, end = tr.last(t)
	assert.Equal(t, dedupe.OutcomeError, end.Outcome)
	assert.Equal(t, 1, end.Attempts)
}

func TestTracerKeyOnlyWhenAsked(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t, pgtest.URL(t), nil)
	tr := &recTracer{}
	d := dedupe.New(&dedupe.Options{Tracer: tr, TraceKeys: true})
	_, err := d.Do(ctx, db.Pool, dedupe.Request{Scope: "trace", Key: "secret"}, func(context.Context, pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{Status: 200}, nil
	})
	require.NoError(t, err)
	start, _ := tr.last(t)
	assert.Equal(t, "secret", start.Key)
	assert.Equal(t, dedupe.KeyHash("secret"), start.KeyHash)
}

// A duplicate waiting on the key's lock for a concurrent holder reports the wait.
func TestTracerWaitInProgress(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t, pgtest.URL(t), nil)
	holder := dedupe.New(nil)
	tr := &recTracer{}
	const lockWait = 50 * time.Millisecond
	d := dedupe.New(&dedupe.Options{Tracer: tr, LockWait: lockWait})
	req := dedupe.Request{Scope: "trace", Key: "busy"}

	claimed, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := holder.Do(ctx, db.Pool, req, func(context.Context, pgx.Tx) (dedupe.Response, error) {
			close(claimed)
			<-release
			return dedupe.Response{Status: 200}, nil
		})
		done <- err
	}()
	<-claimed
	_, err := d.Do(ctx, db.Pool, req, func(context.Context, pgx.Tx) (dedupe.Response, error) {
		t.Error("the duplicate must not run")
		return dedupe.Response{}, nil
	})
	close(release)
	require.NoError(t, <-done)
	require.ErrorIs(t, err, dedupe.ErrInProgress)
	_, end := tr.last(t)
	assert.Equal(t, dedupe.OutcomeInProgress, end.Outcome)
	assert.GreaterOrEqual(t, end.Wait, lockWait, "the claim waited LockWait for the holder")
}

func TestKeyHash(t *testing.T) {
	// SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223...
	assert.Equal(t, "ba7816bf8f01cfea", dedupe.KeyHash("abc"))
}

func TestSourceString(t *testing.T) {
	assert.Equal(t, "executed", dedupe.SourceExecuted.String())
	assert.Equal(t, "Source(7)", dedupe.Source(7).String())
	assert.Equal(t, "postgres", dedupe.SourcePostgres.String())
	assert.Equal(t, "redis", dedupe.SourceRedis.String())
}

func TestMultiTracer(t *testing.T) {
	assert.Nil(t, dedupe.MultiTracer())
	assert.Nil(t, dedupe.MultiTracer(nil, nil))
	a, b := &recTracer{}, &recTracer{}
	assert.Same(t, a, dedupe.MultiTracer(nil, a))

	// a has traced one request already, so its span ids differ from b's.
	a.starts, a.ends, a.endIDs = []dedupe.TraceDoStartData{{}}, []dedupe.TraceDoEndData{{}}, []any{1}
	m := dedupe.MultiTracer(a, nil, b)
	ctx := m.TraceDoStart(context.Background(), dedupe.TraceDoStartData{Component: "x"})
	m.TraceDoEnd(ctx, dedupe.TraceDoEndData{Outcome: dedupe.OutcomeExecuted})
	for _, r := range []*recTracer{a, b} {
		start, end := r.last(t)
		assert.Equal(t, "x", start.Component)
		assert.Equal(t, dedupe.OutcomeExecuted, end.Outcome)
	}
	assert.Equal(t, []any{1, 2}, a.endIDs, "a ends with the context its own start returned")
	assert.Equal(t, []any{1}, b.endIDs)
}
