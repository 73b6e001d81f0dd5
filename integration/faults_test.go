package integration_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/examples/orders/ordersvc"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/integration/soak"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// The backend holding a claim is terminated mid-transaction: nothing commits, and a retry
// with the same key yields exactly one effect.
func TestFaultBackendKilledMidTransaction(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(nil)
	ctx := context.Background()
	req := dedupe.Request{Scope: "orders", Key: "killed"}
	pids := make(chan int32, 1)
	killed := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := d.Do(ctx, db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			if _, err := insertOrder(nil, req.Key)(ctx, tx); err != nil {
				return dedupe.Response{}, err
			}
			pid, err := backendPID(ctx, tx)
			if err != nil {
				return dedupe.Response{}, err
			}
			pids <- pid
			<-killed
			_, err = tx.Exec(ctx, `SELECT 1`) // the backend is gone
			return dedupe.Response{Status: 201}, err
		})
		done <- err
	}()
	pid := <-pids
	var terminated bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&terminated))
	require.True(t, terminated)
	close(killed)
	require.Error(t, <-done, "the request fails")
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM orders`), "nothing committed")
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))

	res, err := d.Do(ctx, db.Pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err, "the pool replaces the dead connection")
	assert.False(t, res.Replayed())
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// proxiedPool returns a pool whose connections go through a fault proxy.
func proxiedPool(t *testing.T, db *pgtest.DB) (*harness.Proxy, *pgxpool.Pool) {
	t.Helper()
	upstream, rewrite := harness.ProxyURL(t, db.URL)
	p := harness.NewProxy(t, upstream)
	pool, err := pgxpool.New(context.Background(), rewrite(p.Addr))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return p, pool
}

// The connection is cut while COMMIT is in flight: the server committed, the client never
// heard. The retry replays. And cut before COMMIT: nothing committed, the retry executes.
// Either way exactly one effect.
func TestFaultConnectionCutAroundCommit(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	proxy, pool := proxiedPool(t, db)
	d := dedupe.New(nil)
	ctx := context.Background()

	for _, tc := range []struct {
		name      string
		cutOn     string // server message the proxy drops before cutting the connection
		committed bool
	}{
		{"after the server committed", "COMMIT\x00", true},
		{"after the business insert, before COMMIT", "INSERT 0 1\x00", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := dedupe.Request{Scope: "orders", Key: tc.name}
			cut := proxy.CutOnServerBytes([]byte(tc.cutOn), 1)
			_, err := d.Do(ctx, pool, req, insertOrder(nil, req.Key))
			<-cut
			require.Error(t, err, "the client does not learn the outcome")
			orders := `SELECT count(*) FROM orders WHERE request_key = $1`
			if tc.committed {
				assert.Equal(t, 1, count(t, db.Pool, orders, req.Key))
			} else {
				// The server rolls the orphaned transaction back when it sees the socket close.
				require.Eventually(t, func() bool {
					return count(t, db.Pool, `SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND datname = current_database() AND query LIKE '%INSERT INTO orders%'`) == 0
				}, 10*time.Second, 10*time.Millisecond)
				assert.Zero(t, count(t, db.Pool, orders, req.Key))
			}
			res, err := d.Do(ctx, pool, req, insertOrder(nil, req.Key))
			require.NoError(t, err)
			assert.Equal(t, tc.committed, res.Replayed())
			assert.Equal(t, 1, count(t, db.Pool, orders, req.Key), "exactly one effect")
		})
	}
}

// runSoak starts two order services on databaseURL, drives them for d while fault runs, and
// checks the history through checkPool.
func runSoak(t *testing.T, databaseURL string, checkPool *pgxpool.Pool, d time.Duration, fault func(ctx context.Context)) soak.Report {
	t.Helper()
	rep, _ := runSoakWith(t, ordersvc.Config{DatabaseURL: databaseURL}, checkPool, d, fault)
	return rep
}

// runSoakWith is runSoak with a service configuration (Redis) and the record returned.
func runSoakWith(t *testing.T, cfg ordersvc.Config, checkPool *pgxpool.Pool, d time.Duration, fault func(ctx context.Context)) (soak.Report, *soak.Record) {
	t.Helper()
	ctx := context.Background()
	skus := map[string]int{"plenty": 1_000_000, "scarce": 200}
	cfg.MaxConns, cfg.LockWait = 12, 2*time.Second
	in, err := soak.Start(ctx, cfg, 2, skus)
	require.NoError(t, err)
	defer in.Close()
	faultCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { fault(faultCtx) })
	rec, err := soak.Run(ctx, soak.Config{Targets: in.Targets, Clients: 16, Duration: d, SKUs: skus})
	stop()
	wg.Wait()
	require.NoError(t, err)
	rep, err := soak.Check(ctx, checkPool, rec, skus)
	require.NoError(t, err)
	t.Logf("\n%s", rep)
	assert.True(t, rep.OK(), "invariants hold under the fault")
	assert.Positive(t, rep.Created)
	return rep, rec
}

// every runs f every period until ctx ends.
func every(ctx context.Context, period time.Duration, f func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// The soak through a slow link whose connections are cut at COMMIT and at random: the
// invariants hold.
func TestFaultSoakThroughFaultyLink(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	upstream, rewrite := harness.ProxyURL(t, db.URL)
	proxy := harness.NewProxy(t, upstream)
	proxy.SetLatency(2 * time.Millisecond)
	rep := runSoak(t, rewrite(proxy.Addr), db.Pool, 8*time.Second, func(ctx context.Context) {
		n := 0
		every(ctx, 250*time.Millisecond, func() {
			n++
			if n%8 == 0 {
				proxy.CutAll()
			} else {
				proxy.CutOnServerBytes([]byte("COMMIT\x00"), 1)
			}
		})
	})
	assert.Positive(t, rep.NoAnswer+rep.ServerErrors, "the faults were felt")
}

// PostgreSQL restarts during the soak: the pools reconnect by themselves and the invariants
// hold.
func TestFaultPostgresRestart(t *testing.T) {
	t.Parallel()
	srv := harness.OwnPostgres(t)
	db := pgtest.New(t, srv.URL, nil)
	restarted := make(chan time.Time, 1)
	rep := runSoak(t, db.URL, db.Pool, 10*time.Second, func(ctx context.Context) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second): // let traffic build up first
		}
		assert.NoError(t, srv.Restart())
		restarted <- time.Now()
	})
	select {
	case at := <-restarted:
		t.Logf("restarted at %v", at.Format(time.TimeOnly))
	default:
		t.Fatal("the restart did not happen during the run")
	}
	assert.Positive(t, rep.Created)
}

// Purging expired keys while writers keep re-claiming them: no errors, and neither side waits
// long on the other (purge skips rows requests have locked).
func TestFaultPurgeConcurrentWithWrites(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 12})
	createOrders(t, db.Pool)
	pgtest.Warm(t, db.Pool, 10)
	d := dedupe.New(nil)
	ctx, stop := context.WithTimeout(context.Background(), 4*time.Second)
	defer stop()
	var mu sync.Mutex
	var slowestDo, slowestPurge time.Duration
	var dos, purged int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := string(rune('a'+w)) + "-" + string(rune('a'+i%26))
				t0 := time.Now()
				_, err := d.Do(ctx, db.Pool, dedupe.Request{Scope: "purge", Key: key, TTL: time.Millisecond}, insertOrder(nil, key))
				if ctx.Err() != nil {
					return
				}
				assert.NoError(t, err)
				mu.Lock()
				slowestDo = max(slowestDo, time.Since(t0))
				dos++
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			t0 := time.Now()
			n, err := d.Purge(ctx, db.Pool, 50)
			if ctx.Err() != nil {
				return
			}
			assert.NoError(t, err)
			mu.Lock()
			slowestPurge = max(slowestPurge, time.Since(t0))
			purged += n
			mu.Unlock()
		}
	})
	wg.Wait()
	t.Logf("%d requests (slowest %v), %d keys purged (slowest purge call %v)", dos, slowestDo, purged, slowestPurge)
	assert.Positive(t, purged, "the purge found expired keys")
	assert.Less(t, slowestDo, 2*time.Second, "no request waited long on the purge")
	assert.Less(t, slowestPurge, 2*time.Second, "no purge waited long on requests")
}

// Redis is flushed, stopped and restarted empty during the soak: no duplicates, and with the
// guard failing open the service keeps creating orders through PostgreSQL while Redis is down.
func TestFaultSoakRedisFlushedStoppedRestarted(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	rs := harness.StartRedis(t)
	var down, up time.Time
	_, rec := runSoakWith(t, ordersvc.Config{DatabaseURL: db.URL, RedisURL: rs.URL(), RedisPrefix: harness.Prefix(t)}, db.Pool, 9*time.Second,
		func(ctx context.Context) {
			step := func(d time.Duration) bool {
				select {
				case <-ctx.Done():
					return false
				case <-time.After(d):
					return true
				}
			}
			if !step(2 * time.Second) {
				return
			}
			assert.NoError(t, rs.Client().FlushAll(context.Background()).Err())
			if !step(2 * time.Second) {
				return
			}
			down = time.Now()
			rs.Stop()
			if !step(2 * time.Second) {
				return
			}
			up = time.Now()
			rs.Start() // no persistence: it comes back empty
		})
	require.False(t, down.IsZero() || up.IsZero(), "the faults happened during the run")
	served := 0
	for _, e := range rec.Events {
		if e.Status == 201 && !e.Replayed && e.At.After(down) && e.At.Before(up) {
			served++
		}
	}
	t.Logf("%d orders created while Redis was down", served)
	assert.Positive(t, served, "fail-open: PostgreSQL kept serving while Redis was down")
}

// A Redis link slower than the guard's timeout: every check times out, requests fail open to
// PostgreSQL, and the invariants hold.
func TestFaultSoakSlowRedisLink(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	rs := harness.StartRedis(t)
	upstream, rewrite := harness.ProxyURL(t, rs.URL())
	proxy := harness.NewProxy(t, upstream)
	proxy.SetLatency(150 * time.Millisecond) // the guard's default timeout is 100ms
	rep, _ := runSoakWith(t, ordersvc.Config{DatabaseURL: db.URL, RedisURL: rewrite(proxy.Addr), RedisPrefix: harness.Prefix(t)}, db.Pool, 6*time.Second,
		func(ctx context.Context) {
			select {
			case <-ctx.Done():
			case <-time.After(3 * time.Second):
				proxy.SetLatency(0) // the link recovers
			}
		})
	assert.Positive(t, rep.Replays, "retries were answered")
}
