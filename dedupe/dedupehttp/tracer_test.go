package dedupehttp_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
)

type recTracer struct {
	mu     sync.Mutex
	starts []dedupe.TraceDoStartData
	ends   []dedupe.TraceDoEndData
}

type spanKey struct{}

func (r *recTracer) TraceDoStart(ctx context.Context, data dedupe.TraceDoStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, data)
	return context.WithValue(ctx, spanKey{}, len(r.starts))
}

func (r *recTracer) TraceDoEnd(_ context.Context, data dedupe.TraceDoEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, data)
}

// take returns the one span recorded since the last take.
func (r *recTracer) take(t *testing.T) (dedupe.TraceDoStartData, dedupe.TraceDoEndData) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Len(t, r.starts, 1)
	require.Len(t, r.ends, 1)
	s, e := r.starts[0], r.ends[0]
	r.starts, r.ends = nil, nil
	return s, e
}

func (r *recTracer) none(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Empty(t, r.starts)
	assert.Empty(t, r.ends)
}

func TestTracerOneSpanPerRequest(t *testing.T) {
	tr := &recTracer{}
	f := newFixture(t, dedupehttp.Config{Tracer: tr})
	var handlerSpan any
	mw, err := dedupehttp.New(dedupehttp.Config{DB: f.pool, Tracer: tr})
	require.NoError(t, err)
	f.mux.Handle("POST /spans", mw.Required(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlerSpan = r.Context().Value(spanKey{})
			w.WriteHeader(http.StatusCreated)
		})))

	w := f.do("POST", "/orders", "k1", `{"sku":"a"}`)
	require.Equal(t, http.StatusCreated, w.Code)
	start, end := tr.take(t)
	assert.Equal(t, dedupe.TraceDoStartData{Component: "dedupehttp", Operation: "request", Scope: "POST /orders", KeyHash: dedupe.KeyHash("k1")}, start)
	assert.Equal(t, dedupe.OutcomeExecuted, end.Outcome)
	assert.Equal(t, http.StatusCreated, end.Status)
	assert.Equal(t, 1, end.Attempts)
	assert.Positive(t, end.Wait, "the claim ran under the middleware's span")
	assert.GreaterOrEqual(t, end.Duration, end.Wait)

	w = f.do("POST", "/orders", "k1", `{"sku":"a"}`)
	require.Equal(t, http.StatusCreated, w.Code)
	_, end = tr.take(t)
	assert.Equal(t, dedupe.OutcomeReplayed, end.Outcome)
	assert.Equal(t, dedupe.SourcePostgres, end.Source)

	w = f.do("POST", "/orders", "k1", `{"sku":"b"}`)
	require.Equal(t, http.StatusUnprocessableEntity, w.Code)
	_, end = tr.take(t)
	assert.Equal(t, dedupe.OutcomeMismatch, end.Outcome)
	assert.Equal(t, http.StatusUnprocessableEntity, end.Status)

	w = f.do("POST", "/orders", "", `{}`)
	require.Equal(t, http.StatusBadRequest, w.Code)
	start, end = tr.take(t)
	assert.Empty(t, start.KeyHash)
	assert.Equal(t, dedupe.OutcomeInvalid, end.Outcome)
	assert.Equal(t, http.StatusBadRequest, end.Status)
	assert.Error(t, end.Err)

	f.svc.status = http.StatusServiceUnavailable
	w = f.do("POST", "/orders", "k2", `{}`)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	_, end = tr.take(t)
	assert.Equal(t, dedupe.OutcomeRolledBack, end.Outcome)
	assert.Equal(t, http.StatusServiceUnavailable, end.Status)

	// Not deduplicated: no span.
	f.do("POST", "/orders/1/notes", "", `{}`)
	f.do("GET", "/orders", "k3", "")
	tr.none(t)

	// The handler runs with the span's context.
	w = f.do("POST", "/spans", "k4", `{}`)
	require.Equal(t, http.StatusCreated, w.Code)
	tr.take(t)
	assert.Equal(t, 1, handlerSpan)
}

func TestTracerKeysOptIn(t *testing.T) {
	tr := &recTracer{}
	f := newFixture(t, dedupehttp.Config{Tracer: tr, TraceKeys: true})
	f.do("POST", "/orders", "visible", `{}`)
	start, _ := tr.take(t)
	assert.Equal(t, "visible", start.Key)
}
