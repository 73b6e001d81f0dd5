package deliverybench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/delivery"
)

// DeliverCase is one delivery cell: which receiver, and the Client's fetch settings.
type DeliverCase struct {
	ID, Name string
	// Dedupe sends to a dedupehttp receiver that records an effect row per message, else to
	// a no-op receiver answering 204.
	Dedupe bool
	// Direct measures the receiver alone: Workers HTTP clients posting unique keys to it.
	Direct bool
	// Config adjusts the Client's configuration (nil: the defaults).
	Config func(*delivery.Config)
	// Async gives the Client a pool with synchronous_commit = off (the receiver keeps its
	// own, synchronous, pool).
	Async bool
}

// DeliverCases are the throughput cells.
func DeliverCases() []DeliverCase {
	riverDefaults := func(c *delivery.Config) { c.FetchCooldown, c.FetchPollInterval = 100*time.Millisecond, time.Second }
	pollOnly := func(c *delivery.Config) { c.PollOnly = true }
	return []DeliverCase{
		{ID: "noop", Name: "deliver to a no-op receiver (defaults)"},
		{ID: "noop-pollonly", Name: "deliver to a no-op receiver, PollOnly", Config: pollOnly},
		{ID: "noop-100w", Name: "deliver to a no-op receiver, 100 workers", Config: func(c *delivery.Config) { c.Workers = 100 }},
		{ID: "noop-async", Name: "deliver to a no-op receiver, Client pool with synchronous_commit = off", Async: true},
		{ID: "noop-river-defaults", Name: "deliver to a no-op receiver, River's fetch defaults (100 ms cooldown)", Config: riverDefaults},
		{ID: "dedupe-direct", Name: "dedupehttp receiver alone (as many HTTP clients as workers)", Dedupe: true, Direct: true},
		{ID: "dedupe", Name: "deliver to the dedupehttp receiver (defaults)", Dedupe: true},
		{ID: "dedupe-async", Name: "deliver to the dedupehttp receiver, Client pool with synchronous_commit = off", Dedupe: true, Async: true},
	}
}

// receiver returns a server for c and a channel closed once n requests were answered 2xx.
func (e *Env) receiver(c DeliverCase, n int) (*httptest.Server, <-chan struct{}, error) {
	done := make(chan struct{})
	var ok atomic.Int64
	count := func(status int) {
		if status >= 200 && status < 300 && ok.Add(1) == int64(n) {
			close(done)
		}
	}
	if !c.Dedupe {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
			count(http.StatusNoContent)
		})), done, nil
	}
	mw, err := dedupehttp.New(dedupehttp.Config{DB: e.Pool})
	if err != nil {
		return nil, nil, err
	}
	apply := mw.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := dedupehttp.Tx(r.Context())
		key, _ := dedupehttp.Key(r.Context())
		if _, err := tx.Exec(r.Context(), `INSERT INTO bench_effects (key) VALUES ($1)`, key); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		apply.ServeHTTP(rec, r)
		count(rec.status)
	})), done, nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(s int) { r.status = s; r.ResponseWriter.WriteHeader(s) }

// RunDeliver enqueues n messages for c's receiver, then measures how fast they are
// delivered (messages per second, from Start until the receiver answered the last one 2xx).
// Direct cases post the same n requests from DefaultWorkers HTTP clients instead.
func (e *Env) RunDeliver(ctx context.Context, c DeliverCase, n int) (float64, error) {
	if err := e.Reset(ctx); err != nil {
		return 0, err
	}
	srv, done, err := e.receiver(c, n)
	if err != nil {
		return 0, err
	}
	defer srv.Close()
	if c.Direct {
		return e.direct(ctx, srv.URL, n, done)
	}
	cfg := &delivery.Config{Schema: e.Schema, Logger: e.Quiet}
	if c.Config != nil {
		c.Config(cfg)
	}
	pool := e.Pool
	if c.Async {
		pool = e.AsyncPool
	}
	cl, err := delivery.New(pool, cfg)
	if err != nil {
		return 0, err
	}
	for lo := 0; lo < n; lo += 1000 {
		err := pgx.BeginFunc(ctx, e.Pool, func(tx pgx.Tx) error {
			for i := lo; i < min(lo+1000, n); i++ {
				m := Message(int64(i))
				m.URL = srv.URL
				if err := cl.EnqueueTx(ctx, tx, m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	t0 := time.Now()
	if err := cl.Start(ctx); err != nil {
		return 0, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = cl.Stop(sctx)
	}()
	select {
	case <-done:
		return float64(n) / time.Since(t0).Seconds(), nil
	case <-time.After(5 * time.Minute):
		return 0, fmt.Errorf("%s: %d messages not delivered within 5 minutes", c.ID, n)
	}
}

// direct posts n requests with unique keys to url from DefaultWorkers goroutines.
func (e *Env) direct(ctx context.Context, url string, n int, done <-chan struct{}) (float64, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = delivery.DefaultWorkers
	client := &http.Client{Transport: t}
	defer t.CloseIdleConnections()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		once     sync.Once
	)
	t0 := time.Now()
	for range delivery.DefaultWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				m := Message(i)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(m.Body)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", m.Key)
				resp, err := client.Do(req)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	select {
	case <-done:
	default:
		return 0, fmt.Errorf("direct: fewer than %d requests answered 2xx", n)
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}
