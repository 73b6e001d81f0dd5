package dedupehttp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// orderService is a tiny handler: it inserts an order through the middleware's transaction
// and answers 201 with Location, or what the test tells it to.
type orderService struct {
	calls   atomic.Int64
	status  int           // answer this status instead of creating (0: create)
	block   chan struct{} // when set, wait on it after inserting (holds the claim open)
	entered chan struct{} // when set, signalled after inserting
	// onRequest, when set, sees each request the handler serves.
	onRequest func(r *http.Request)
}

func (s *orderService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	if s.onRequest != nil {
		s.onRequest(r)
	}
	tx, ok := dedupehttp.Tx(r.Context())
	if !ok {
		w.Header().Set("X-No-Tx", "true")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var id int64
	if err := tx.QueryRow(r.Context(), `INSERT INTO orders (body) VALUES ($1) RETURNING id`, body).Scan(&id); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.block != nil {
		<-s.block
	}
	if s.status != 0 {
		w.Header().Set("X-Not-Replayed", "dropped")
		dedupehttp.WriteProblem(w, dedupehttp.Problem{Type: "https://example.com/refused", Title: "refused", Status: s.status})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", fmt.Sprintf("/orders/%d", id))
	w.Header().Set("X-Request-Only", "first")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"id":%d,"echo":%s}`, id, body)
}

type fixture struct {
	pool *pgxpool.Pool
	mux  *http.ServeMux
	svc  *orderService
}

func newFixture(t testing.TB, cfg dedupehttp.Config) *fixture {
	t.Helper()
	db := pgtest.New(t, pgtest.URL(t), &pgtest.Options{MaxConns: 16})
	_, err := db.Pool.Exec(context.Background(), `CREATE TABLE orders (id bigserial PRIMARY KEY, body bytea NOT NULL)`)
	require.NoError(t, err)
	cfg.DB = db.Pool
	mw, err := dedupehttp.New(cfg)
	require.NoError(t, err)
	f := &fixture{pool: db.Pool, mux: http.NewServeMux(), svc: &orderService{}}
	f.mux.Handle("POST /orders", mw.Required(f.svc))
	f.mux.Handle("POST /orders/{id}/notes", mw.Optional(f.svc))
	f.mux.Handle("GET /orders", mw.Required(f.svc))
	return f
}

func (f *fixture) do(method, path, key, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		r.Header.Set(dedupehttp.HeaderKey, key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	return w
}

func (f *fixture) orders(t testing.TB) int {
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&n))
	return n
}

func problemType(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	assert.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	var p dedupehttp.Problem
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
	assert.Equal(t, w.Code, p.Status)
	return strings.TrimPrefix(p.Type, dedupehttp.DefaultProblemTypeBase)
}

func TestFirstThenByteIdenticalReplay(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	first := f.do("POST", "/orders", "k1", `{"sku":"a","qty":1}`)
	require.Equal(t, http.StatusCreated, first.Code)
	assert.Equal(t, "first", first.Header().Get("X-Request-Only"), "the first response carries every header the handler set")
	assert.Empty(t, first.Header().Get(dedupehttp.HeaderReplayed))
	assert.JSONEq(t, `{"id":1,"echo":{"sku":"a","qty":1}}`, first.Body.String(), "the handler got the body unchanged")

	for range 2 {
		again := f.do("POST", "/orders", "k1", `{"qty":1, "sku":"a"}`) // same JSON, other order
		assert.Equal(t, first.Code, again.Code)
		assert.Equal(t, first.Body.Bytes(), again.Body.Bytes(), "byte-identical body")
		assert.Equal(t, first.Header().Values("Content-Type"), again.Header().Values("Content-Type"))
		assert.Equal(t, first.Header().Values("Location"), again.Header().Values("Location"))
		assert.Equal(t, "true", again.Header().Get(dedupehttp.HeaderReplayed))
		assert.Empty(t, again.Header().Get("X-Request-Only"), "headers outside the replay list are not stored")
	}
	assert.Equal(t, int64(1), f.svc.calls.Load())
	assert.Equal(t, 1, f.orders(t))
}

func TestKeyForms(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	require.Equal(t, http.StatusCreated, f.do("POST", "/orders", `"abc-1"`, `{}`).Code)
	bare := f.do("POST", "/orders", `abc-1`, `{}`)
	assert.Equal(t, "true", bare.Header().Get(dedupehttp.HeaderReplayed), "quoted and bare forms name the same key")
	escaped := f.do("POST", "/orders", `"a\"b\\c"`, `{}`)
	require.Equal(t, http.StatusCreated, escaped.Code)
	assert.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM dedupe_keys WHERE key = 'a"b\c'`))
}

func TestKeyMissingAndMalformed(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	w := f.do("POST", "/orders", "", `{}`)
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Equal(t, dedupehttp.ProblemKeyMissing, problemType(t, w))

	for name, key := range map[string]string{
		"unterminated quote": `"abc`,
		"data after quote":   `"abc"x`,
		"bad escape":         `"a\nb"`,
		"space in bare key":  `a b`,
		"control byte":       "a\x01b",
		"empty quoted":       `""`,
		"over the limit":     strings.Repeat("k", dedupe.MaxKeyLen+1),
		"non-ASCII":          "clé",
	} {
		w := f.do("POST", "/orders", key, `{}`)
		assert.Equal(t, http.StatusBadRequest, w.Code, name)
		assert.Equal(t, dedupehttp.ProblemKeyMalformed, problemType(t, w), name)
	}
	w = f.do("POST", "/orders", "", `{}`, dedupehttp.HeaderKey, "a", dedupehttp.HeaderKey, "b")
	assert.Equal(t, http.StatusBadRequest, w.Code, "two header lines")
	assert.Equal(t, http.StatusCreated, f.do("POST", "/orders", strings.Repeat("k", dedupe.MaxKeyLen), `{}`).Code, "the limit itself is fine")
	assert.Equal(t, int64(1), f.svc.calls.Load(), "only the valid request reached the handler")
}

func TestOptionalKeyAndUnguardedMethods(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	w := f.do("POST", "/orders/1/notes", "", `{}`)
	assert.Equal(t, http.StatusAccepted, w.Code)
	assert.Equal(t, "true", w.Header().Get("X-No-Tx"), "no key on an optional route: passed through without a transaction")
	w = f.do("POST", "/orders/1/notes", "n1", `{}`)
	assert.Equal(t, http.StatusCreated, w.Code, "a key on an optional route is deduplicated")
	w = f.do("GET", "/orders", "", ``)
	assert.Equal(t, "true", w.Header().Get("X-No-Tx"), "GET is not a guarded method")
}

func TestFingerprintMismatch422(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	require.Equal(t, http.StatusCreated, f.do("POST", "/orders", "k", `{"qty":1}`).Code)
	w := f.do("POST", "/orders", "k", `{"qty":2}`)
	assert.Equal(t, http.StatusUnprocessableEntity, w.Code)
	assert.Equal(t, dedupehttp.ProblemKeyMismatch, problemType(t, w))
	w = f.do("POST", "/orders?dry_run=1", "k", `{"qty":1}`)
	assert.Equal(t, http.StatusUnprocessableEntity, w.Code, "the query string is part of the request")
	assert.Equal(t, 1, f.orders(t))
}

// A query string that url.Values cannot parse is fingerprinted as its raw bytes: the pairs it
// would drop (after a ';', around a bad %-escape) still tell requests apart, while the same
// raw query is still a replay.
func TestUnparseableQueryIsFingerprinted(t *testing.T) {
	for name, q := range map[string][2]string{
		"semicolon":  {"?amount=1;to=alice", "?amount=9;to=mallory"},
		"bad escape": {"?amount=1&to=%zz", "?amount=9&to=%zz"},
		"mixed":      {"?to=%zz", "?to=%yy"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, dedupehttp.Config{})
			require.Equal(t, http.StatusCreated, f.do("POST", "/orders"+q[0], "k", `{"qty":1}`).Code)
			w := f.do("POST", "/orders"+q[0], "k", `{"qty":1}`)
			assert.Equal(t, http.StatusCreated, w.Code)
			assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"), "the same raw query replays")
			w = f.do("POST", "/orders"+q[1], "k", `{"qty":1}`)
			assert.Equal(t, http.StatusUnprocessableEntity, w.Code, "another raw query is another request")
			assert.Equal(t, 1, f.orders(t))
		})
	}
}

func TestInProgress409WithRetryAfter(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{Runner: dedupe.New(&dedupe.Options{LockWait: 50 * time.Millisecond}), RetryAfter: 2 * time.Second})
	f.svc.block = make(chan struct{})
	f.svc.entered = make(chan struct{}, 1)
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- f.do("POST", "/orders", "slow", `{}`) }()
	<-f.svc.entered

	w := f.do("POST", "/orders", "slow", `{}`)
	assert.Equal(t, http.StatusConflict, w.Code)
	assert.Equal(t, dedupehttp.ProblemKeyInProgress, problemType(t, w))
	assert.Equal(t, "2", w.Header().Get("Retry-After"))

	close(f.svc.block)
	assert.Equal(t, http.StatusCreated, (<-first).Code)
	w = f.do("POST", "/orders", "slow", `{}`)
	assert.Equal(t, "true", w.Header().Get(dedupehttp.HeaderReplayed), "after the first commits, the retry replays")
	assert.Equal(t, 1, f.orders(t))
}

func TestTenantIsolation(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{Tenant: func(r *http.Request) string { return r.Header.Get("X-Tenant") }})
	a := f.do("POST", "/orders", "shared-key", `{"who":"a"}`, "X-Tenant", "a")
	b := f.do("POST", "/orders", "shared-key", `{"who":"b"}`, "X-Tenant", "b")
	require.Equal(t, http.StatusCreated, a.Code)
	require.Equal(t, http.StatusCreated, b.Code, "tenant b's request is its own, not a mismatch against a's")
	assert.NotEqual(t, a.Body.String(), b.Body.String())
	again := f.do("POST", "/orders", "shared-key", `{"who":"b"}`, "X-Tenant", "b")
	assert.Equal(t, b.Body.String(), again.Body.String(), "b replays b's response, never a's")
	assert.Equal(t, 2, f.orders(t))
}

func TestBodyLimit413(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{MaxBodyBytes: 16})
	w := f.do("POST", "/orders", "big", `{"x":"0123456789abcdef"}`)
	assert.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
	assert.Equal(t, dedupehttp.ProblemRequestTooLarge, problemType(t, w))
	assert.Zero(t, f.svc.calls.Load())
	assert.Equal(t, http.StatusCreated, f.do("POST", "/orders", "big", `{"x":1}`).Code, "the key was not consumed")
}

func TestHandlerPanicRollsBack(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	mw, err := dedupehttp.New(dedupehttp.Config{DB: f.pool})
	require.NoError(t, err)
	panicky := mw.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := dedupehttp.Tx(r.Context())
		_, _ = tx.Exec(r.Context(), `INSERT INTO orders (body) VALUES ('doomed')`)
		panic("bug")
	}))
	r := httptest.NewRequest("POST", "/orders", strings.NewReader(`{}`))
	r.Header.Set(dedupehttp.HeaderKey, "p")
	w := httptest.NewRecorder()
	assert.PanicsWithValue(t, "bug", func() { panicky.ServeHTTP(w, r) })
	assert.Zero(t, w.Body.Len(), "nothing was sent to the client")
	assert.Zero(t, f.orders(t))
	assert.Equal(t, http.StatusCreated, f.do("POST", "/orders", "p", `{}`).Code, "the key stayed free")
}

func TestServerErrorRollsBackButClientSeesIt(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	f.svc.status = http.StatusServiceUnavailable
	w := f.do("POST", "/orders", "k", `{}`)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "dropped", w.Header().Get("X-Not-Replayed"))
	assert.Zero(t, f.orders(t), "rolled back")
	assert.Zero(t, count(t, f.pool, `SELECT count(*) FROM dedupe_keys`))
	f.svc.status = 0
	w = f.do("POST", "/orders", "k", `{}`)
	assert.Equal(t, http.StatusCreated, w.Code, "a retry runs again")
	assert.Empty(t, w.Header().Get(dedupehttp.HeaderReplayed))
}

func TestClientErrorIsCommittedAndReplayed(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	f.svc.status = http.StatusConflict
	first := f.do("POST", "/orders", "k", `{}`)
	f.svc.status = 0
	again := f.do("POST", "/orders", "k", `{}`)
	assert.Equal(t, http.StatusConflict, again.Code)
	assert.Equal(t, first.Body.Bytes(), again.Body.Bytes())
	assert.Equal(t, "true", again.Header().Get(dedupehttp.HeaderReplayed))
	assert.Equal(t, 1, f.orders(t), "the refusal's writes committed with it")
	assert.Equal(t, int64(1), f.svc.calls.Load())
}

func TestCustomCommitPolicyAndResponseLimit(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{Commit: func(status int) bool { return status < 400 }, MaxResponseBytes: 100})
	f.svc.status = http.StatusConflict
	assert.Equal(t, http.StatusConflict, f.do("POST", "/orders", "k", `{}`).Code)
	assert.Zero(t, f.orders(t), "4xx rolled back under this policy")
	f.svc.status = 0
	w := f.do("POST", "/orders", "k2", `{"padding":"`+strings.Repeat("0123456789", 10)+`"}`)
	assert.Equal(t, http.StatusInternalServerError, w.Code, "response over MaxResponseBytes")
	assert.Zero(t, f.orders(t))
}

func TestConcurrentSameKeyOverHTTP(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	srv := httptest.NewServer(f.mux)
	defer srv.Close()
	pgtest.Warm(t, f.pool, 16)
	const n = 16
	start := make(chan struct{})
	var wg sync.WaitGroup
	bodies := make([]string, n)
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("POST", srv.URL+"/orders", strings.NewReader(`{"n":1}`))
			req.Header.Set(dedupehttp.HeaderKey, "burst")
			resp, err := srv.Client().Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			bodies[i], codes[i] = string(b), resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		assert.Equal(t, http.StatusCreated, codes[i])
		assert.Equal(t, bodies[0], bodies[i])
	}
	assert.Equal(t, 1, f.orders(t))
}

func TestNewRequiresDB(t *testing.T) {
	_, err := dedupehttp.New(dedupehttp.Config{})
	assert.Error(t, err)
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}
