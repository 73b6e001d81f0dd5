package delivery_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/delivery"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// testDB returns a schema of its own with the toolkit's and River's tables.
func testDB(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t, pgtest.URL(t), &pgtest.Options{MaxConns: 16})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, delivery.Migrate(ctx, db.Pool, &delivery.MigrateConfig{Schema: db.Schema}))
	return db
}

// quiet drops River's logs (retries are expected in these tests).
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fastConfig retries within milliseconds so that tests of retries stay short.
func fastConfig(schema string) *delivery.Config {
	return &delivery.Config{
		Schema: schema, Workers: 4, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		RequestTimeout: 10 * time.Second, FetchPollInterval: 50 * time.Millisecond, Logger: quiet,
	}
}

// startClient starts a Client that is stopped when the test ends.
func startClient(t *testing.T, pool *pgxpool.Pool, cfg *delivery.Config) *delivery.Client {
	t.Helper()
	c, err := delivery.New(pool, cfg)
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}

// enqueue enqueues msgs in one committed transaction and returns their keys.
func enqueue(t *testing.T, c *delivery.Client, pool *pgxpool.Pool, msgs ...delivery.Message) []string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, m := range msgs {
			if err := c.EnqueueTx(ctx, tx, m); err != nil {
				return err
			}
			keys = append(keys, m.Key)
		}
		return nil
	}))
	return keys
}

// jobID returns the id the message with key got when it was forwarded to the workers.
func jobID(t *testing.T, pool *pgxpool.Pool, key string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT id FROM river_job WHERE args->>'key' = $1`, key).Scan(&id))
	return id
}

// request is what a receiver saw.
type request struct {
	Method, Key, Body, ContentType string
	At                             time.Time
}

// receiver is an httptest server answering with answer(n, r), n counting the requests that
// carried r's key (1 for the first), and recording every request in order.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	seen []request
	byK  map[string]int
	got  chan request
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, n int, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{byK: map[string]int{}, got: make(chan request, 1024)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := request{Method: r.Method, Key: r.Header.Get("Idempotency-Key"), Body: string(body),
			ContentType: r.Header.Get("Content-Type"), At: time.Now()}
		rc.mu.Lock()
		rc.seen = append(rc.seen, req)
		rc.byK[req.Key]++
		n := rc.byK[req.Key]
		rc.mu.Unlock()
		answer(w, n, r)
		select {
		case rc.got <- req:
		default:
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.seen...)
}

// waitState waits until the message with key is in state (River's job state), failing
// after a minute.
func waitState(t *testing.T, pool *pgxpool.Pool, key string, state string) {
	t.Helper()
	waitFor(t, time.Minute, func() bool {
		var s string
		err := pool.QueryRow(context.Background(), `SELECT state FROM river_job WHERE args->>'key' = $1`, key).Scan(&s)
		if errors.Is(err, pgx.ErrNoRows) {
			return false // still in the outbox
		}
		require.NoError(t, err)
		return s == state
	}, "message %q to be %s", key, state)
}

// waitFor polls cond (a database state has no event to wait on) until it holds.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for "+what, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ok(w http.ResponseWriter, _ int, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }
