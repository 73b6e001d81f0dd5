package delivery_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/delivery"
)

type ctxKey struct{}

// recordingTracer keeps every attempt's start and end, and checks that the end gets the
// context the start returned.
type recordingTracer struct {
	mu     sync.Mutex
	starts []delivery.TraceAttemptStartData
	ends   []delivery.TraceAttemptEndData
	lost   int
}

func (r *recordingTracer) TraceAttemptStart(ctx context.Context, d delivery.TraceAttemptStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, d)
	return context.WithValue(ctx, ctxKey{}, len(r.starts))
}

func (r *recordingTracer) TraceAttemptEnd(ctx context.Context, d delivery.TraceAttemptEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Value(ctxKey{}) == nil {
		r.lost++
	}
	r.ends = append(r.ends, d)
}

func TestTracer(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	rc := newReceiver(t, func(w http.ResponseWriter, n int, r *http.Request) {
		switch {
		case r.Header.Get("Idempotency-Key") == "dead":
			w.WriteHeader(410)
		case n == 1:
			w.WriteHeader(503)
		default:
			w.WriteHeader(200)
		}
	})
	tr := &recordingTracer{}
	cfg := fastConfig(db.Schema)
	cfg.Tracer = tr
	c := startClient(t, db.Pool, cfg)
	enqueue(t, c, db.Pool, delivery.Message{URL: rc.URL, Key: "ok"}, delivery.Message{URL: rc.URL, Key: "dead"})
	waitState(t, db.Pool, "ok", "completed")
	waitState(t, db.Pool, "dead", "cancelled")
	tr.mu.Lock()
	defer tr.mu.Unlock()
	assert.Zero(t, tr.lost)
	byStatus := map[int]delivery.TraceAttemptEndData{}
	for _, e := range tr.ends {
		byStatus[e.Status] = e
	}
	assert.Equal(t, delivery.Retry, byStatus[503].Class)
	assert.False(t, byStatus[503].Final)
	assert.Equal(t, delivery.Delivered, byStatus[200].Class)
	assert.True(t, byStatus[200].Final)
	assert.Equal(t, delivery.Dead, byStatus[410].Class)
	assert.True(t, byStatus[410].Final)
	assert.Positive(t, byStatus[200].Duration)
	assert.Len(t, tr.starts, 3)
	for _, s := range tr.starts {
		assert.Contains(t, []string{dedupe.KeyHash("ok"), dedupe.KeyHash("dead")}, s.KeyHash)
		assert.Equal(t, rc.URL, s.URL)
	}
}
