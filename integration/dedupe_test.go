package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// 64 goroutines send the same key at once: one executes, 63 get its stored response.
func TestSameKeyConcurrently(t *testing.T) {
	t.Parallel()
	calls, _ := sameKeyAtOnce(t, dedupe.New(nil), 64)
	assert.Equal(t, int64(1), calls, "the function ran once")
}

// sameKeyAtOnce sends n requests with one key through d at once, released together, into a
// fresh schema with an orders table, and checks what every mode of the core promises: no
// caller fails, exactly one sees the first execution, one business row commits, and every
// caller gets the same response. It returns how often the function ran, and the pool.
func sameKeyAtOnce(t *testing.T, d *dedupe.Deduper, n int) (int64, *pgxpool.Pool) {
	t.Helper()
	db := harness.DB(t, &pgtest.Options{MaxConns: int32(n)})
	createOrders(t, db.Pool)
	req := dedupe.Request{Scope: "orders.create", Key: "same-key", Fingerprint: dedupe.Fingerprint("POST", "/orders", []byte(`{"n":1}`))}

	pgtest.Warm(t, db.Pool, n)
	var calls atomic.Int64
	results := make([]dedupe.Result, n)
	errs := make([]error, n)
	together(n, func(i int) {
		results[i], errs[i] = d.Do(context.Background(), db.Pool, req, insertOrder(&calls, req.Key))
	})

	first := 0
	for i := range n {
		require.NoError(t, errs[i], "caller %d", i)
		if !results[i].Replayed() {
			first++
		}
	}
	assert.Equal(t, 1, first, "exactly one caller sees the first execution")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`), "one business row committed")
	for i := range n {
		assert.Equal(t, results[0].Response, results[i].Response, "caller %d got another response", i)
	}
	return calls.Load(), db.Pool
}

// 10,000 requests over 1,000 keys from 16 goroutines in random order: one effect per key and
// every replay byte-equal to the first response.
func TestManyKeysRandomOrder(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 16})
	createOrders(t, db.Pool)
	d := dedupe.New(nil)

	const requests, keys, workers = 10_000, 1_000, 16
	pgtest.Warm(t, db.Pool, workers)
	order := make([]int, requests)
	for i := range order {
		order[i] = i % keys
	}
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

	var mu sync.Mutex
	firstResp := map[int]dedupe.Response{}
	var responses [keys][]dedupe.Response
	var next atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			<-start
			for {
				i := int(next.Add(1) - 1)
				if i >= requests {
					return
				}
				k := order[i]
				key := fmt.Sprintf("key-%04d", k)
				res, err := d.Do(context.Background(), db.Pool, dedupe.Request{Scope: "orders", Key: key}, insertOrder(nil, key))
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				if !res.Replayed() {
					if _, dup := firstResp[k]; dup {
						mu.Unlock()
						errc <- fmt.Errorf("key %s executed twice", key)
						return
					}
					firstResp[k] = res.Response
				}
				responses[k] = append(responses[k], res.Response)
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}

	assert.Equal(t, keys, count(t, db.Pool, `SELECT count(*) FROM orders`), "business rows == distinct keys")
	assert.Equal(t, keys, count(t, db.Pool, `SELECT count(DISTINCT request_key) FROM orders`))
	assert.Equal(t, keys, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))
	require.Len(t, firstResp, keys)
	for k := range keys {
		require.Len(t, responses[k], requests/keys)
		for _, r := range responses[k] {
			assert.Equal(t, firstResp[k], r, "key %d: replay differs from first response", k)
		}
	}
}

// A failing function stores nothing; a retry with the same key runs again and succeeds.
func TestFunctionErrorFreesKey(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders", Key: "fails-once"}

	errPayment := errors.New("payment provider unavailable")
	var calls atomic.Int64
	_, err := d.Do(context.Background(), db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		if _, err := insertOrder(&calls, req.Key)(ctx, tx); err != nil {
			return dedupe.Response{}, err
		}
		return dedupe.Response{}, errPayment
	})
	require.ErrorIs(t, err, errPayment, "the function's error comes back")
	var kerr *dedupe.KeyError
	require.ErrorAs(t, err, &kerr)
	assert.Equal(t, req.Key, kerr.Key)
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM orders`), "effect rolled back")
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`), "key stays free")

	res, err := d.Do(context.Background(), db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.False(t, res.Replayed())
	assert.Equal(t, int64(2), calls.Load())
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// A business refusal (a 4xx response) is committed and replayed like a success.
func TestFailureStatusIsReplayed(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders", Key: "out-of-stock"}
	var calls atomic.Int64
	refuse := func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		calls.Add(1)
		return dedupe.Response{Status: 409, Body: []byte(`{"title":"out of stock"}`)}, nil
	}
	first, err := d.Do(context.Background(), db.Pool, req, refuse)
	require.NoError(t, err)
	again, err := d.Do(context.Background(), db.Pool, req, refuse)
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response)
	assert.Equal(t, int64(1), calls.Load())
}

// With a bounded wait, a duplicate of a request still running gets ErrInProgress; once the
// first commits, the duplicate replays it.
func TestBoundedWaitInProgress(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	bounded := dedupe.New(&dedupe.Options{LockWait: 100 * time.Millisecond})
	req := dedupe.Request{Scope: "orders", Key: "held"}

	h := holdKey(t, dedupe.New(nil), db.Pool, req)
	<-h.claimed

	var calls atomic.Int64
	start := time.Now()
	_, err := bounded.Do(context.Background(), db.Pool, req, insertOrder(&calls, req.Key))
	waited := time.Since(start)
	require.ErrorIs(t, err, dedupe.ErrInProgress)
	assert.GreaterOrEqual(t, waited, 100*time.Millisecond, "waited the bound")
	assert.Less(t, waited, 5*time.Second, "gave up near the bound")
	assert.Zero(t, calls.Load())

	h.release <- nil
	require.NoError(t, <-h.done)
	res, err := bounded.Do(context.Background(), db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.True(t, res.Replayed())
	assert.Equal(t, "held", string(res.Response.Body))
	assert.Zero(t, calls.Load())
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// By default a duplicate waits for the first transaction and replays its response; if the
// first rolls back, the waiting duplicate claims the key and runs itself.
func TestWaitingDuplicateAfterCommitAndRollback(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(nil)

	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("first commits=%v", commit), func(t *testing.T) {
			req := dedupe.Request{Scope: "orders", Key: fmt.Sprintf("wait-%v", commit)}
			h := holdKey(t, d, db.Pool, req)
			pid := <-h.claimed

			var calls atomic.Int64
			got := make(chan dedupe.Result, 1)
			gotErr := make(chan error, 1)
			go func() {
				res, err := d.Do(context.Background(), db.Pool, req, insertOrder(&calls, req.Key))
				got <- res
				gotErr <- err
			}()
			waitBlockedBy(t, db.Pool, pid, 1)
			if commit {
				h.release <- nil
				require.NoError(t, <-h.done)
			} else {
				h.release <- errors.New("first request failed")
				require.Error(t, <-h.done)
			}
			res := <-got
			require.NoError(t, <-gotErr)
			assert.Equal(t, commit, res.Replayed())
			if commit {
				assert.Equal(t, "held", string(res.Response.Body))
				assert.Zero(t, calls.Load())
			} else {
				assert.Equal(t, int64(1), calls.Load(), "the duplicate ran after the first rolled back")
			}
			assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders WHERE request_key = $1`, req.Key))
		})
	}
}

// A waiting duplicate gives up when its context ends.
func TestWaitHonoursContext(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders", Key: "ctx"}
	h := holdKey(t, d, db.Pool, req)
	<-h.claimed

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := d.Do(ctx, db.Pool, req, insertOrder(nil, req.Key))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
	h.release <- nil
	require.NoError(t, <-h.done)
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// The same key with a different fingerprint is refused, and nothing runs.
func TestFingerprintMismatch(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(nil)
	var calls atomic.Int64
	req := dedupe.Request{Scope: "orders", Key: "k", Fingerprint: dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":1}`))}
	_, err := d.Do(context.Background(), db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)

	// Same JSON with members reordered and spaced: same request.
	same := req
	same.Fingerprint = dedupe.Fingerprint("POST", "/orders", []byte(`{ "qty" : 1 }`))
	res, err := d.Do(context.Background(), db.Pool, same, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.True(t, res.Replayed())

	other := req
	other.Fingerprint = dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":2}`))
	_, err = d.Do(context.Background(), db.Pool, other, insertOrder(&calls, req.Key))
	require.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)
	unfingerprinted := req
	unfingerprinted.Fingerprint = nil
	_, err = d.Do(context.Background(), db.Pool, unfingerprinted, insertOrder(&calls, req.Key))
	require.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)

	assert.Equal(t, int64(1), calls.Load())
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// An expired key counts as new: the next request re-claims it in place (one row, new
// fingerprint) and runs; concurrent re-claimers produce one execution.
func TestExpiryReclaim(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 16})
	createOrders(t, db.Pool)
	d := dedupe.New(nil)
	ctx := context.Background()
	req := dedupe.Request{Scope: "orders", Key: "expiring", Fingerprint: []byte("v1"), TTL: time.Hour}
	_, err := d.Do(ctx, db.Pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	var ttl time.Duration
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT extract(epoch FROM expires_at - created_at)::bigint * 1000000000 FROM dedupe_keys`).Scan(&ttl))
	assert.Equal(t, time.Hour, ttl, "request TTL is stored")

	expire := func() {
		_, err := db.Pool.Exec(ctx, `UPDATE dedupe_keys SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'`)
		require.NoError(t, err)
	}
	expire()
	req.Fingerprint = []byte("v2") // the old fingerprint no longer binds an expired key
	var calls atomic.Int64
	const n = 8
	pgtest.Warm(t, db.Pool, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	replayed := make([]bool, n)
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
			assert.NoError(t, err)
			replayed[i] = res.Replayed()
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int64(1), calls.Load(), "one re-execution after expiry")
	assert.Equal(t, 2, count(t, db.Pool, `SELECT count(*) FROM orders`))
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys WHERE fingerprint = 'v2' AND expires_at > now() AND status = 201`))
}

// countingExecer records what each Purge statement deleted.
type countingExecer struct {
	dedupe.Execer
	batches []int64
}

func (c *countingExecer) Exec(ctx context.Context, sql string, args ...any) (tag pgconn.CommandTag, err error) {
	tag, err = c.Execer.Exec(ctx, sql, args...)
	c.batches = append(c.batches, tag.RowsAffected())
	return tag, err
}

// Purge deletes only expired rows, in bounded batches.
func TestPurgeInBatches(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO dedupe_keys (scope, key, status, created_at, expires_at)
		SELECT 'purge', 'expired-' || i, 200, now() - interval '2 days', now() - interval '1 day' FROM generate_series(1, 2500) i`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO dedupe_keys (scope, key, status, expires_at)
		SELECT 'purge', 'live-' || i, 200, now() + interval '1 day' FROM generate_series(1, 10) i`)
	require.NoError(t, err)

	c := &countingExecer{Execer: db.Pool}
	n, err := dedupe.New(nil).Purge(ctx, c, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(2500), n)
	assert.Equal(t, []int64{1000, 1000, 500}, c.batches)
	assert.Equal(t, 10, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = dedupe.New(nil).Purge(cancelled, db.Pool, 0)
	assert.ErrorIs(t, err, context.Canceled)
}

// Under SERIALIZABLE, a write-skew conflict between two requests makes one fail with 40001;
// Do reruns it and both succeed exactly once.
func TestSerializationRetry(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE ledger (request_key text PRIMARY KEY, amount int NOT NULL)`)
	require.NoError(t, err)
	d := dedupe.New(&dedupe.Options{TxOptions: pgx.TxOptions{IsoLevel: pgx.Serializable}, RetryBaseDelay: time.Millisecond})

	// Both first attempts read the balance before either writes: a dangerous structure that
	// PostgreSQL must break by aborting one of them.
	var arrived sync.WaitGroup
	arrived.Add(2)
	bothRead := make(chan struct{})
	go func() { arrived.Wait(); close(bothRead) }()
	var attempts atomic.Int64
	fn := func(key string) dedupe.Func {
		var first atomic.Bool
		first.Store(true)
		return func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			attempts.Add(1)
			var balance int
			if err := tx.QueryRow(ctx, `SELECT coalesce(sum(amount), 0) FROM ledger`).Scan(&balance); err != nil {
				return dedupe.Response{}, err
			}
			if first.Swap(false) {
				arrived.Done()
				<-bothRead
			}
			if _, err := tx.Exec(ctx, `INSERT INTO ledger VALUES ($1, $2)`, key, balance+1); err != nil {
				return dedupe.Response{}, err
			}
			return dedupe.Response{Status: 200, Body: fmt.Appendf(nil, "%d", balance+1)}, nil
		}
	}
	var wg sync.WaitGroup
	results := make([]dedupe.Result, 2)
	for i, key := range []string{"a", "b"} {
		wg.Go(func() {
			var err error
			results[i], err = d.Do(ctx, db.Pool, dedupe.Request{Scope: "ledger", Key: key}, fn(key))
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	total := results[0].Attempts + results[1].Attempts
	assert.GreaterOrEqual(t, total, 3, "at least one request was retried")
	assert.Equal(t, int64(total), attempts.Load(), "every attempt ran the function once")
	assert.Equal(t, 2, count(t, db.Pool, `SELECT count(*) FROM ledger`))
	assert.Equal(t, 2, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))
}

// Under REPEATABLE READ, a duplicate that waited for a claim committed after its snapshot
// gets a serialization failure from the INSERT; Do retries and replays.
func TestRepeatableReadWaitingDuplicate(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	rr := dedupe.New(&dedupe.Options{TxOptions: pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, RetryBaseDelay: time.Millisecond})
	req := dedupe.Request{Scope: "orders", Key: "rr"}
	h := holdKey(t, rr, db.Pool, req)
	pid := <-h.claimed

	done := make(chan dedupe.Result, 1)
	go func() {
		res, err := rr.Do(context.Background(), db.Pool, req, insertOrder(nil, req.Key))
		assert.NoError(t, err)
		done <- res
	}()
	waitBlockedBy(t, db.Pool, pid, 1)
	h.release <- nil
	require.NoError(t, <-h.done)
	res := <-done
	assert.True(t, res.Replayed())
	assert.Equal(t, 2, res.Attempts, "the first attempt hit 40001 and was rerun")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders`))
}
