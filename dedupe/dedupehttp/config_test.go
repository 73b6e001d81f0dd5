package dedupehttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
)

// Without a Runner, a concurrent duplicate waits at most DefaultLockWait for the first
// request, then gets 409 with a Retry-After derived from that wait: it never holds a pooled
// connection without bound.
func TestDefaultRunnerWaitIsBounded(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	f.svc.block = make(chan struct{})
	f.svc.entered = make(chan struct{}, 1)
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- f.do("POST", "/orders", "slow", `{}`) }()
	<-f.svc.entered

	w := f.do("POST", "/orders", "slow", `{}`)
	assert.Equal(t, http.StatusConflict, w.Code)
	assert.Equal(t, dedupehttp.ProblemKeyInProgress, problemType(t, w))
	assert.Equal(t, fmt.Sprint(int(dedupehttp.DefaultLockWait.Seconds())), w.Header().Get("Retry-After"))
	close(f.svc.block)
	assert.Equal(t, http.StatusCreated, (<-first).Code)
}

// The key header's name, the fingerprint, the key in the handler's context and the replay
// hook are the caller's to choose.
func TestHeaderFingerprintKeyAndReplayHook(t *testing.T) {
	var replays []dedupe.Result
	var seen []string
	f := newFixture(t, dedupehttp.Config{
		Header: "X-Request-Id",
		// Only the "amount" member counts: a retry that changes "note" replays.
		Fingerprint: func(r *http.Request, body []byte) []byte {
			var v struct{ Amount int }
			_ = json.Unmarshal(body, &v)
			return dedupe.Fingerprint(r.Method, r.URL.Path, fmt.Appendf(nil, "%d", v.Amount))
		},
		OnReplay: func(r *http.Request, res dedupe.Result) { replays = append(replays, res) },
	})
	keyed := func(body string) *httptest.ResponseRecorder {
		return f.do("POST", "/orders", "", body, "X-Request-Id", "abc")
	}
	f.svc.onRequest = func(r *http.Request) {
		k, ok := dedupehttp.Key(r.Context())
		assert.True(t, ok)
		seen = append(seen, k)
	}

	assert.Equal(t, http.StatusBadRequest, f.do("POST", "/orders", "k", `{"amount":1}`).Code, "Idempotency-Key is not the header now")
	require.Equal(t, http.StatusCreated, keyed(`{"amount":1,"note":"a"}`).Code)
	w := keyed(`{"amount":1,"note":"b"}`)
	assert.Equal(t, http.StatusCreated, w.Code)
	assert.Equal(t, "true", w.Header().Get(dedupehttp.HeaderReplayed), "only the chosen field is fingerprinted")
	assert.Equal(t, http.StatusUnprocessableEntity, keyed(`{"amount":2,"note":"a"}`).Code)
	assert.Equal(t, []string{"abc"}, seen, "the handler ran once and saw the key")
	require.Len(t, replays, 1)
	assert.Equal(t, dedupe.SourcePostgres, replays[0].Source)
	assert.Equal(t, 1, f.orders(t))
}

// A body that cannot be read is its own problem, not a malformed key.
func TestUnreadableBody(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	r := httptest.NewRequest("POST", "/orders", io.NopCloser(failingReader{}))
	r.Header.Set(dedupehttp.HeaderKey, "k")
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Equal(t, dedupehttp.ProblemBodyUnreadable, problemType(t, w))
	assert.Zero(t, f.orders(t))
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// A runner that refuses for want of a dependency (the Redis guard failing closed) is a 503
// with Retry-After, not a 500.
func TestUnavailableIs503(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{Runner: unavailable{}, RetryAfter: 3e9})
	w := f.do("POST", "/orders", "k", `{}`)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, dedupehttp.ProblemUnavailable, problemType(t, w))
	assert.Equal(t, "3", w.Header().Get("Retry-After"))
	assert.Zero(t, f.svc.calls.Load())
}

type unavailable struct{}

func (unavailable) Do(context.Context, dedupe.DB, dedupe.Request, dedupe.Func) (dedupe.Result, error) {
	return dedupe.Result{}, fmt.Errorf("guard: %w", dedupe.ErrUnavailable)
}

// Bad configuration fails at New, not on the first request.
func TestNewRefusesBadConfig(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	for name, cfg := range map[string]dedupehttp.Config{
		"header with a space": {DB: f.pool, Header: "Idempotency Key"},
		"negative retry":      {DB: f.pool, RetryAfter: -1},
		"negative body limit": {DB: f.pool, MaxBodyBytes: -1},
	} {
		_, err := dedupehttp.New(cfg)
		assert.Error(t, err, name)
	}
}

// The middleware's response limit follows the Runner's: by default it stops buffering where
// the Deduper would refuse to store, and a larger limit is refused at New.
func TestResponseLimitFollowsRunner(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	small := dedupe.New(&dedupe.Options{MaxResponseBytes: 100})
	_, err := dedupehttp.New(dedupehttp.Config{DB: f.pool, Runner: small, MaxResponseBytes: 101})
	assert.ErrorContains(t, err, "above the Runner's limit")

	rec := &recTracer{}
	mw, err := dedupehttp.New(dedupehttp.Config{DB: f.pool, Runner: small, Tracer: rec})
	require.NoError(t, err)
	f.mux = http.NewServeMux()
	f.mux.Handle("POST /orders", mw.Required(f.svc))
	w := f.do("POST", "/orders", "big", `{"padding":"`+strings.Repeat("0123456789", 10)+`"}`)
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	_, end := rec.take(t)
	assert.ErrorContains(t, end.Err, "larger than MaxResponseBytes", "the middleware, not the Deduper at commit, refused it")
	assert.Zero(t, f.orders(t))
}
