package integration_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/pessimistic"
)

var productsTable = pgx.Identifier{"products"}

// decrementLocked takes n units of sku under FOR UPDATE, in its own transaction.
func decrementLocked(ctx context.Context, pool *pgxpool.Pool, sku string, n int) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var stock int
		if err := (pessimistic.Lock{}).Row(ctx, tx, productsTable, "sku", sku, []string{"stock"}, &stock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE products SET stock = $2, version = version + 1 WHERE sku = $1`, sku, stock-n)
		return err
	})
}

// 16 goroutines x 200 decrements through FOR UPDATE: exact, with no retries at all.
func TestPessimisticForUpdateDecrementsAreExact(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 16})
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, productsDDL+`; INSERT INTO products (sku, stock) VALUES ('hot', 5000)`)
	require.NoError(t, err)
	pgtest.Warm(t, db.Pool, 16)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			<-start
			for range 200 {
				if !assert.NoError(t, decrementLocked(ctx, db.Pool, "hot", 1)) {
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, 5000-3200, count(t, db.Pool, `SELECT stock FROM products`))
	assert.Equal(t, 1+3200, count(t, db.Pool, `SELECT version FROM products`))
}

// holdRow locks a row in a background transaction until release is closed.
func holdRow(t *testing.T, pool *pgxpool.Pool, sku string) (pid int32, release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, (pessimistic.Lock{}).Row(ctx, tx, productsTable, "sku", sku, nil))
	pid, err = backendPID(ctx, tx)
	require.NoError(t, err)
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback(ctx) }) }
	t.Cleanup(release)
	return pid, release
}

// NOWAIT fails at once, a bounded wait fails within its bound, and either way the caller's
// transaction stays usable. lock_timeout is restored after the statement.
func TestPessimisticNoWaitAndLockTimeout(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, productsDDL+`; INSERT INTO products (sku, stock) VALUES ('a', 1), ('b', 1)`)
	require.NoError(t, err)
	_, release := holdRow(t, db.Pool, "a")

	for name, l := range map[string]pessimistic.Lock{
		"nowait":  {Mode: pessimistic.NoWait},
		"timeout": {Timeout: 150 * time.Millisecond},
	} {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) // on a failed assertion too, or the schema cannot be dropped
		start := time.Now()
		err = l.Row(ctx, tx, productsTable, "sku", "a", nil)
		waited := time.Since(start)
		require.ErrorIs(t, err, pessimistic.ErrLockNotAvailable, name)
		if l.Timeout > 0 {
			assert.GreaterOrEqual(t, waited, l.Timeout, "waited the bound")
		}
		assert.Less(t, waited, 3*time.Second, "%s gave up near its bound", name)
		// The transaction survived the refusal and can lock another row.
		require.NoError(t, l.Row(ctx, tx, productsTable, "sku", "b", nil), name)
		var setting string
		require.NoError(t, tx.QueryRow(ctx, `SHOW lock_timeout`).Scan(&setting))
		assert.Equal(t, "0", setting, "%s: lock_timeout restored", name)
		require.NoError(t, tx.Rollback(ctx))
	}
	release()

	// SKIP LOCKED on a locked row looks like no row.
	_, release = holdRow(t, db.Pool, "a")
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		return pessimistic.Lock{Mode: pessimistic.SkipLocked}.Row(ctx, tx, productsTable, "sku", "a", nil)
	})
	assert.ErrorIs(t, err, pessimistic.ErrNotFound)
	release()
}

// A SKIP LOCKED queue of 1,000 rows drained by 8 workers: every row processed exactly once.
func TestPessimisticSkipLockedQueue(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 8})
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE jobs (id int PRIMARY KEY, done_by int, runs int NOT NULL DEFAULT 0);
		INSERT INTO jobs (id) SELECT generate_series(1, 1000)`)
	require.NoError(t, err)
	pgtest.Warm(t, db.Pool, 8)
	start := make(chan struct{})
	var wg sync.WaitGroup
	var batches atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			<-start
			for {
				var ids []int
				err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
					ids = ids[:0]
					err := pessimistic.Lock{Mode: pessimistic.SkipLocked}.Query(ctx, tx,
						`SELECT id FROM jobs WHERE done_by IS NULL ORDER BY id LIMIT 10`, nil, func(r pgx.Rows) error {
							var id int
							if err := r.Scan(&id); err != nil {
								return err
							}
							ids = append(ids, id)
							return nil
						})
					if err != nil || len(ids) == 0 {
						return err
					}
					_, err = tx.Exec(ctx, `UPDATE jobs SET done_by = $1, runs = runs + 1 WHERE id = ANY($2)`, w, ids)
					return err
				})
				if !assert.NoError(t, err) || len(ids) == 0 {
					return
				}
				batches.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, 1000, count(t, db.Pool, `SELECT count(*) FROM jobs WHERE runs = 1`), "each row exactly once")
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM jobs WHERE runs <> 1`))
	assert.Greater(t, count(t, db.Pool, `SELECT count(DISTINCT done_by) FROM jobs`), 1, "the workers shared the queue")
	t.Logf("%d batches", batches.Load())
}

// The documented hash is what PostgreSQL computes with the documented SQL.
func TestPessimisticAdvisoryKeyMatchesSQL(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	for _, name := range []string{"", "run-once:daily-report\x1f2026-11-22", "é", "a longer lock name with spaces"} {
		var sqlKey int64
		require.NoError(t, db.Pool.QueryRow(context.Background(),
			`SELECT ('x' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16))::bit(64)::bigint`, name).Scan(&sqlKey))
		assert.Equal(t, sqlKey, pessimistic.Key(name), "%q", name)
	}
	assert.Equal(t, pessimistic.Key("run-once:daily-report\x1f2026-11-22"), pessimistic.RunOnceKey("daily-report", "2026-11-22"))
}

// Transaction-scoped try-locks from two connections: exactly one wins, until its
// transaction ends.
func TestPessimisticAdvisoryTryLock(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	key := pessimistic.Key("nightly")
	tx1, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	tx2, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx2.Rollback(ctx)
	ok1, err := pessimistic.TryXactLock(ctx, tx1, key)
	require.NoError(t, err)
	ok2, err := pessimistic.TryXactLock(ctx, tx2, key)
	require.NoError(t, err)
	assert.True(t, ok1)
	assert.False(t, ok2, "exactly one wins")
	ok, err := pessimistic.TryXactLock2(ctx, tx2, 7, 42)
	require.NoError(t, err)
	assert.True(t, ok, "the two-int form is a separate key space")
	require.NoError(t, tx1.Commit(ctx))
	ok2, err = pessimistic.TryXactLock(ctx, tx2, key)
	require.NoError(t, err)
	assert.True(t, ok2, "released when the holder's transaction ended")

	waiter, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer waiter.Rollback(ctx)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	assert.Error(t, pessimistic.XactLock(short, waiter, key), "waiting is bounded by ctx")
}

// A session lock is released when its function returns, panics or is cancelled, on the
// connection that took it.
func TestPessimisticSessionLockRelease(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	key := pessimistic.Key("session")
	// Checks come from a separate session: advisory locks are re-entrant within the session
	// holding them, so a check on a pooled connection could be fooled by the holder itself.
	other, err := pgx.Connect(ctx, db.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close(ctx) })
	free := func() bool {
		var ok bool
		require.NoError(t, other.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok))
		if ok {
			_, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key)
			require.NoError(t, err)
		}
		return ok
	}
	blocked := func() bool {
		err := pessimistic.TryWithSessionLock(ctx, db.Pool, key, func(context.Context, *pgxpool.Conn) error { return nil })
		return errors.Is(err, pessimistic.ErrNotLocked)
	}

	err = pessimistic.WithSessionLock(ctx, db.Pool, key, func(ctx context.Context, conn *pgxpool.Conn) error {
		assert.False(t, free(), "held while fn runs")
		assert.True(t, blocked(), "TryWithSessionLock from the pool is turned away")
		_, err := conn.Exec(ctx, `SELECT 1`) // work on the holding connection, outside any transaction
		return err
	})
	require.NoError(t, err)
	assert.True(t, free(), "released after return")

	assert.PanicsWithValue(t, "job bug", func() {
		_ = pessimistic.WithSessionLock(ctx, db.Pool, key, func(context.Context, *pgxpool.Conn) error { panic("job bug") })
	})
	assert.True(t, free(), "released after a panic")

	cctx, cancel := context.WithCancel(ctx)
	err = pessimistic.WithSessionLock(cctx, db.Pool, key, func(ctx context.Context, _ *pgxpool.Conn) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	})
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, free(), "released after cancellation")
	assert.Zero(t, db.Pool.Stat().AcquiredConns(), "every connection went back")

	assert.ErrorIs(t, pessimistic.WithSessionLock(ctx, db.Pool, key, nil), pessimistic.ErrNilFunc)
	assert.ErrorIs(t, pessimistic.WithSessionLock(ctx, nil, key, func(context.Context, *pgxpool.Conn) error { return nil }), pessimistic.ErrNilDB)
}

// 8 goroutines start the same job for the same period: exactly one runs it; later calls learn
// it already ran; a failed run leaves the period free.
func TestPessimisticRunOnce(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 8})
	ctx := context.Background()
	pgtest.Warm(t, db.Pool, 8)
	var runs atomic.Int64
	release := make(chan struct{})
	job := func(ctx context.Context, tx pgx.Tx) error {
		runs.Add(1)
		<-release // stay running while the others start
		return nil
	}
	start := make(chan struct{})
	results := make(chan error, 8)
	for range 8 {
		go func() {
			<-start
			results <- pessimistic.RunOnce(ctx, db.Pool, "daily-report", "2026-11-22", nil, job)
		}()
	}
	close(start)
	// The runner is held inside its job; the seven others must come back without waiting.
	var errs []error
	for range 7 {
		select {
		case err := <-results:
			errs = append(errs, err)
		case <-time.After(30 * time.Second):
			close(release)
			t.Fatal("the other starters waited for the running job instead of being turned away")
		}
	}
	for _, err := range errs {
		assert.ErrorIs(t, err, pessimistic.ErrTaken, "turned away while the job runs")
	}
	close(release)
	assert.NoError(t, <-results, "the runner committed")
	assert.Equal(t, int64(1), runs.Load())
	assert.ErrorIs(t, pessimistic.RunOnce(ctx, db.Pool, "daily-report", "2026-11-22", nil, job), pessimistic.ErrAlreadyRan)

	boom := errors.New("report failed")
	assert.ErrorIs(t, pessimistic.RunOnce(ctx, db.Pool, "daily-report", "2026-11-23", nil, func(context.Context, pgx.Tx) error { return boom }), boom)
	require.NoError(t, pessimistic.RunOnce(ctx, db.Pool, "daily-report", "2026-11-23", nil, func(context.Context, pgx.Tx) error { return nil }),
		"a failed run leaves the period free")
	assert.ErrorIs(t, pessimistic.RunOnce(ctx, db.Pool, "", "p", nil, job), pessimistic.ErrInvalid)
	assert.ErrorIs(t, pessimistic.RunOnce(ctx, db.Pool, "j", "", nil, job), pessimistic.ErrInvalid)
	assert.ErrorIs(t, pessimistic.RunOnce(ctx, db.Pool, "j", "p", nil, nil), pessimistic.ErrNilFunc)
}

// Two transactions lock two rows in opposite orders: PostgreSQL aborts one with 40P01, which
// surfaces as ErrDeadlock; RetryTx reruns it and both succeed.
func TestPessimisticDeadlock(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 4})
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, productsDDL+`; INSERT INTO products (sku, stock) VALUES ('a', 100), ('b', 100)`)
	require.NoError(t, err)

	for _, retry := range []bool{false, true} {
		var firstLocked sync.WaitGroup
		firstLocked.Add(2)
		both := make(chan struct{})
		go func() { firstLocked.Wait(); close(both) }()
		transfer := func(from, to string) func(context.Context, pgx.Tx) error {
			var once sync.Once
			return func(ctx context.Context, tx pgx.Tx) error {
				if err := (pessimistic.Lock{}).Row(ctx, tx, productsTable, "sku", from, nil); err != nil {
					return err
				}
				once.Do(func() { firstLocked.Done(); <-both }) // both hold their first row
				if err := (pessimistic.Lock{}).Row(ctx, tx, productsTable, "sku", to, nil); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE products SET stock = stock + CASE sku WHEN $1 THEN -1 ELSE 1 END WHERE sku IN ($1, $2)`, from, to)
				return err
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		attempts := make([]int, 2)
		for i, pair := range [][2]string{{"a", "b"}, {"b", "a"}} {
			wg.Go(func() {
				fn := transfer(pair[0], pair[1])
				if retry {
					attempts[i], errs[i] = pessimistic.RetryTx(ctx, db.Pool, &pessimistic.RetryOptions{BaseDelay: time.Millisecond}, fn)
				} else {
					errs[i] = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return fn(ctx, tx) })
				}
			})
		}
		wg.Wait()
		if !retry {
			deadlocks := 0
			for _, err := range errs {
				if errors.Is(err, pessimistic.ErrDeadlock) {
					deadlocks++
				}
			}
			assert.Equal(t, 1, deadlocks, "one transaction is the deadlock victim: %v", errs)
			continue
		}
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		assert.Equal(t, 3, attempts[0]+attempts[1], "the victim ran again once")
	}
	assert.Equal(t, 200, count(t, db.Pool, `SELECT sum(stock) FROM products`), "transfers conserve stock")
}

// Identifiers needing quotes work; SQL-looking ones are quoted, never executed; bad input is
// refused before any SQL.
func TestPessimisticIdentifiersAndBadInput(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE "order" (id int PRIMARY KEY, qty int); INSERT INTO "order" VALUES (1, 5);
		CREATE TABLE "line item" ("order id" int PRIMARY KEY); INSERT INTO "line item" VALUES (1)`)
	require.NoError(t, err)
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var qty int
		if err := (pessimistic.Lock{}).Row(ctx, tx, pgx.Identifier{"order"}, "id", 1, []string{"qty"}, &qty); err != nil {
			return err
		}
		assert.Equal(t, 5, qty)
		return (pessimistic.Lock{Mode: pessimistic.NoWait}).Row(ctx, tx, pgx.Identifier{"line item"}, "order id", 1, nil)
	})
	require.NoError(t, err)

	hostile := `order" WHERE true; DROP TABLE "order"; --`
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		return (pessimistic.Lock{Mode: pessimistic.NoWait}).Row(ctx, tx, pgx.Identifier{hostile}, "id", 1, nil)
	})
	require.Error(t, err, "no such table")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM "order"`), "nothing was executed")

	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		for name, err := range map[string]error{
			"empty table":      (pessimistic.Lock{}).Row(ctx, tx, pgx.Identifier{}, "id", 1, nil),
			"empty table part": (pessimistic.Lock{}).Row(ctx, tx, pgx.Identifier{""}, "id", 1, nil),
			"empty key column": (pessimistic.Lock{}).Row(ctx, tx, pgx.Identifier{"order"}, "", 1, nil),
			"dest mismatch":    (pessimistic.Lock{}).Row(ctx, tx, pgx.Identifier{"order"}, "id", 1, []string{"qty"}),
			"nil function":     (pessimistic.Lock{}).Query(ctx, tx, `SELECT 1`, nil, nil),
		} {
			assert.ErrorIs(t, err, pessimistic.ErrInvalid, name)
		}
		return nil
	})
	require.NoError(t, err)
	_, err = pessimistic.RetryTx(ctx, db.Pool, nil, nil)
	assert.ErrorIs(t, err, pessimistic.ErrNilFunc)
}
