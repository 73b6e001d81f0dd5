package integration_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/pessimistic"
)

// createOrders makes the business table most dedupe tests write to.
func createOrders(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `CREATE TABLE orders (
		id bigserial PRIMARY KEY,
		request_key text NOT NULL,
		note text NOT NULL DEFAULT ''
	)`)
	require.NoError(t, err)
}

// insertOrder is the business write: one order row, and a response naming it.
func insertOrder(calls *atomic.Int64, key string) dedupe.Func {
	return func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		if calls != nil {
			calls.Add(1)
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO orders (request_key) VALUES ($1) RETURNING id`, key).Scan(&id); err != nil {
			return dedupe.Response{}, err
		}
		return dedupe.Response{
			Status: 201,
			Header: map[string][]string{"Content-Type": {"application/json"}, "Location": {fmt.Sprintf("/orders/%d", id)}},
			Body:   fmt.Appendf(nil, `{"id":%d,"key":%q}`, id, key),
		}, nil
	}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func backendPID(ctx context.Context, tx pgx.Tx) (int32, error) {
	var pid int32
	err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)
	return pid, err
}

// waitBlockedBy polls the server until n backends are waiting on a lock held by holderPID.
// A server-side wait cannot be observed through a channel; this polls the condition itself.
func waitBlockedBy(t *testing.T, pool *pgxpool.Pool, holderPID int32, n int) {
	t.Helper()
	pollBlocked(t, pool, holderPID, func(blocked int) bool { return blocked >= n }, 30*time.Second,
		fmt.Sprintf("no %d backends became blocked by pid %d within 30s", n, holderPID))
}

// waitNotBlockedBy polls the server until no backend waits on a lock held by holderPID.
func waitNotBlockedBy(t *testing.T, pool *pgxpool.Pool, holderPID int32) {
	t.Helper()
	pollBlocked(t, pool, holderPID, func(blocked int) bool { return blocked == 0 }, 10*time.Second,
		fmt.Sprintf("a backend still waits on pid %d's lock 10s after its client gave up", holderPID))
}

// pollBlocked polls how many backends wait on a lock held by holderPID until done says so,
// failing the test with msg after limit.
func pollBlocked(t *testing.T, pool *pgxpool.Pool, holderPID int32, done func(blocked int) bool, limit time.Duration, msg string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if done(count(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, holderPID)) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal(msg)
}

// holder runs Do for key in the background with a function that claims the key and then
// waits, so tests can observe what others see while a claim is open.
type holder struct {
	claimed chan int32 // receives the holder's backend pid once it owns the key
	release chan error // send nil to commit, an error to roll back
	done    chan error // Do's result
}

func holdKey(t *testing.T, d *dedupe.Deduper, pool *pgxpool.Pool, req dedupe.Request) *holder {
	t.Helper()
	h := &holder{claimed: make(chan int32, 1), release: make(chan error, 1), done: make(chan error, 1)}
	go func() {
		_, err := d.Do(context.Background(), pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			pid, err := backendPID(ctx, tx)
			if err != nil {
				return dedupe.Response{}, err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO orders (request_key, note) VALUES ($1, 'holder')`, req.Key); err != nil {
				return dedupe.Response{}, err
			}
			h.claimed <- pid
			if err := <-h.release; err != nil {
				return dedupe.Response{}, err
			}
			return dedupe.Response{Status: 201, Body: []byte("held")}, nil
		})
		h.done <- err
	}()
	t.Cleanup(func() {
		select {
		case h.release <- fmt.Errorf("test cleanup"):
		default:
		}
	})
	return h
}

// together runs f(0), …, f(n-1) on n goroutines released at the same moment (a barrier, so
// they really contend) and returns when all have finished.
func together(n int, f func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// suiteRun tells this run of the test binary from any other. Advisory locks are database-wide,
// so keys built from it keep two copies of the suite, run at once against one database, out of
// each other's locks (each test has a schema of its own, but not a database).
var suiteRun = fmt.Sprintf("%d.%d", os.Getpid(), time.Now().UnixNano())

// lockKey is an advisory-lock key for name that no other run of the suite takes.
func lockKey(name string) int64 { return pessimistic.AdvisoryKey(suiteRun + "/" + name) }
