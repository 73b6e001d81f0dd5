package integration_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
		if err := (pessimistic.RowLock{}).Row(ctx, tx, productsTable, "sku", sku, []string{"stock"}, &stock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE products SET stock = $2, version = version + 1 WHERE sku = $1`, sku, stock-n)
		return err
	})
}

// 16 goroutines x 200 decrements through FOR UPDATE: exact, with no retries at all.
func TestPessimisticForUpdateDecrementsAreExact(t *testing.T) {
	t.Parallel()
	db := productsDB(t, &pgtest.Options{MaxConns: 16}, `('hot', 5000)`)
	ctx := context.Background()
	pgtest.Warm(t, db.Pool, 16)
	start := make(chan struct{})
	var wg sync.WaitGroup
	began := time.Now()
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
	t.Logf("3200 decrements under FOR UPDATE, one transaction each, in %v", time.Since(began).Round(time.Millisecond))
}

// holdRow locks a row in a background transaction until release is closed.
func holdRow(t *testing.T, pool *pgxpool.Pool, sku string) (pid int32, release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, (pessimistic.RowLock{}).Row(ctx, tx, productsTable, "sku", sku, nil))
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
	db := productsDB(t, nil, `('a', 1), ('b', 1)`)
	ctx := context.Background()
	_, release := holdRow(t, db.Pool, "a")

	for name, l := range map[string]pessimistic.RowLock{
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
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		return pessimistic.RowLock{Mode: pessimistic.SkipLocked}.Row(ctx, tx, productsTable, "sku", "a", nil)
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
					err := pessimistic.RowLock{Mode: pessimistic.SkipLocked}.Query(ctx, tx,
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
		assert.Equal(t, sqlKey, pessimistic.AdvisoryKey(name), "%q", name)
	}
	assert.Equal(t, pessimistic.AdvisoryKey("run-once:daily-report\x1f2026-11-22"), pessimistic.RunOnceKey("daily-report", "2026-11-22"))
}

// Transaction-scoped try-locks from two connections: exactly one wins, until its
// transaction ends.
func TestPessimisticAdvisoryTryLock(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	key := lockKey("nightly")
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
	ok, err := pessimistic.TryXactLock2(ctx, tx2, 7, int32(lockKey("nightly-2")))
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
	key := lockKey("session")
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
		err := pessimistic.TryWithSessionLock(ctx, db.Pool, key, func(context.Context, *pgx.Conn) error { return nil })
		return errors.Is(err, pessimistic.ErrLockNotAvailable)
	}

	err = pessimistic.WithSessionLock(ctx, db.Pool, key, func(ctx context.Context, conn *pgx.Conn) error {
		assert.False(t, free(), "held while fn runs")
		assert.True(t, blocked(), "TryWithSessionLock from the pool is turned away")
		_, err := conn.Exec(ctx, `SELECT 1`) // work on the holding connection, outside any transaction
		return err
	})
	require.NoError(t, err)
	assert.True(t, free(), "released after return")

	assert.PanicsWithValue(t, "job bug", func() {
		_ = pessimistic.WithSessionLock(ctx, db.Pool, key, func(context.Context, *pgx.Conn) error { panic("job bug") })
	})
	assert.True(t, free(), "released after a panic")

	cctx, cancel := context.WithCancel(ctx)
	err = pessimistic.WithSessionLock(cctx, db.Pool, key, func(ctx context.Context, _ *pgx.Conn) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	})
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, free(), "released after cancellation")
	assert.Zero(t, db.Pool.Stat().AcquiredConns(), "every connection went back")

	assert.ErrorIs(t, pessimistic.WithSessionLock(ctx, db.Pool, key, nil), pessimistic.ErrNilFunc)
	assert.ErrorIs(t, pessimistic.WithSessionLock(ctx, nil, key, func(context.Context, *pgx.Conn) error { return nil }), pessimistic.ErrNilDB)
	assert.ErrorIs(t, pessimistic.WithSessionLock(ctx, nil, key, func(context.Context, *pgx.Conn) error { return nil }), pessimistic.ErrInvalid, "every input error matches ErrInvalid")
}

// 8 goroutines start the same job for the same period: exactly one runs it; later calls learn
// it already ran; a failed run leaves the period free.
func TestPessimisticRunOnce(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 8})
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE reports (day text NOT NULL, built_by int NOT NULL)`)
	require.NoError(t, err)
	pgtest.Warm(t, db.Pool, 8)
	jobName := "daily-report/" + suiteRun // its lock is database-wide
	var runs atomic.Int64
	release := make(chan struct{})
	job := func(ctx context.Context, tx pgx.Tx) error {
		n := runs.Add(1)
		if _, err := tx.Exec(ctx, `INSERT INTO reports VALUES ('2026-11-22', $1)`, n); err != nil {
			return err
		}
		<-release // stay running while the others start
		return nil
	}
	start := make(chan struct{})
	type result struct {
		outcome pessimistic.RunOutcome
		err     error
	}
	results := make(chan result, 8)
	for range 8 {
		go func() {
			<-start
			o, err := pessimistic.RunOnce(ctx, db.Pool, jobName, "2026-11-22", nil, job)
			results <- result{o, err}
		}()
	}
	close(start)
	// The runner is held inside its job; the seven others must come back without waiting.
	var others []result
	for range 7 {
		select {
		case r := <-results:
			others = append(others, r)
		case <-time.After(30 * time.Second):
			close(release)
			t.Fatal("the other starters waited for the running job instead of being turned away")
		}
	}
	for _, r := range others {
		assert.NoError(t, r.err)
		assert.Equal(t, pessimistic.RunRunningElsewhere, r.outcome, "turned away while the job runs")
	}
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM reports`), "nothing is visible before the run commits")
	close(release)
	ran := <-results
	assert.NoError(t, ran.err)
	assert.Equal(t, pessimistic.RunRan, ran.outcome, "the runner committed")
	assert.Equal(t, int64(1), runs.Load())
	outcome, err := pessimistic.RunOnce(ctx, db.Pool, jobName, "2026-11-22", nil, job)
	require.NoError(t, err)
	assert.Equal(t, pessimistic.RunAlreadyRan, outcome)
	assert.Equal(t, int64(1), runs.Load(), "a later start does not run the job")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM reports`), "one report in the database")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys WHERE scope = $1 AND key = '2026-11-22'`, "job:"+jobName),
		"one record of the run")

	boom := errors.New("report failed")
	runErr := func(job, period string, fn func(context.Context, pgx.Tx) error) error {
		_, err := pessimistic.RunOnce(ctx, db.Pool, job, period, nil, fn)
		return err
	}
	assert.ErrorIs(t, runErr(jobName, "2026-11-23", func(context.Context, pgx.Tx) error { return boom }), boom)
	outcome, err = pessimistic.RunOnce(ctx, db.Pool, jobName, "2026-11-23", nil, func(context.Context, pgx.Tx) error { return nil })
	require.NoError(t, err)
	assert.Equal(t, pessimistic.RunRan, outcome, "a failed run leaves the period free")
	assert.ErrorIs(t, runErr("", "p", job), pessimistic.ErrInvalid)
	assert.ErrorIs(t, runErr("j", "", job), pessimistic.ErrInvalid)
	assert.ErrorIs(t, runErr("j", "p", nil), pessimistic.ErrNilFunc)
	_, err = pessimistic.RunOnce(ctx, (*pgxpool.Pool)(nil), "j", "p", nil, job)
	assert.ErrorIs(t, err, pessimistic.ErrNilDB)
	assert.ErrorIs(t, runErr("j", strings.Repeat("p", 256), job), pessimistic.ErrInvalid)

	// Inside the caller's transaction, the run commits (or not) with it.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	noop := func(context.Context, pgx.Tx) error { return nil }
	outcome, err = pessimistic.RunOnce(ctx, tx, jobName, "2026-11-24", nil, noop)
	require.NoError(t, err)
	assert.Equal(t, pessimistic.RunRan, outcome)
	require.NoError(t, tx.Rollback(ctx))
	outcome, err = pessimistic.RunOnce(ctx, db.Pool, jobName, "2026-11-24", nil, noop)
	require.NoError(t, err)
	assert.Equal(t, pessimistic.RunRan, outcome, "the rolled-back run left the period free")
}

// Two transactions lock two rows in opposite orders: PostgreSQL aborts one with 40P01, which
// surfaces as ErrDeadlock; RetryTx reruns it and both succeed.
func TestPessimisticDeadlock(t *testing.T) {
	t.Parallel()
	db := productsDB(t, &pgtest.Options{MaxConns: 4}, `('a', 100), ('b', 100)`)
	ctx := context.Background()

	for _, retry := range []bool{false, true} {
		var firstLocked sync.WaitGroup
		firstLocked.Add(2)
		both := make(chan struct{})
		go func() { firstLocked.Wait(); close(both) }()
		transfer := func(from, to string) func(context.Context, pgx.Tx) error {
			var once sync.Once
			return func(ctx context.Context, tx pgx.Tx) error {
				if err := (pessimistic.RowLock{}).Row(ctx, tx, productsTable, "sku", from, nil); err != nil {
					return err
				}
				once.Do(func() { firstLocked.Done(); <-both }) // both hold their first row
				if err := (pessimistic.RowLock{}).Row(ctx, tx, productsTable, "sku", to, nil); err != nil {
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
			for _, err := range errs {
				var pgErr *pgconn.PgError
				if errors.Is(err, pessimistic.ErrDeadlock) && assert.ErrorAs(t, err, &pgErr) {
					assert.Equal(t, "40P01", pgErr.Code)
				}
			}
			continue
		}
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		// At least one retry. Exactly one is what usually happens, but when the victim's rerun
		// locks its first row before the survivor, woken by the victim's rollback, takes it,
		// the two deadlock again; RetryTx reruns that victim too.
		assert.GreaterOrEqual(t, attempts[0]+attempts[1], 3, "the victim ran again")
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
		if err := (pessimistic.RowLock{}).Row(ctx, tx, pgx.Identifier{"order"}, "id", 1, []string{"qty"}, &qty); err != nil {
			return err
		}
		assert.Equal(t, 5, qty)
		return (pessimistic.RowLock{Mode: pessimistic.NoWait}).Row(ctx, tx, pgx.Identifier{"line item"}, "order id", 1, nil)
	})
	require.NoError(t, err)

	hostile := `order" WHERE true; DROP TABLE "order"; --`
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		return (pessimistic.RowLock{Mode: pessimistic.NoWait}).Row(ctx, tx, pgx.Identifier{hostile}, "id", 1, nil)
	})
	require.Error(t, err, "no such table")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM "order"`), "nothing was executed")

	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		for name, err := range map[string]error{
			"empty table":      (pessimistic.RowLock{}).Row(ctx, tx, pgx.Identifier{}, "id", 1, nil),
			"empty table part": (pessimistic.RowLock{}).Row(ctx, tx, pgx.Identifier{""}, "id", 1, nil),
			"empty key column": (pessimistic.RowLock{}).Row(ctx, tx, pgx.Identifier{"order"}, "", 1, nil),
			"dest mismatch":    (pessimistic.RowLock{}).Row(ctx, tx, pgx.Identifier{"order"}, "id", 1, []string{"qty"}),
			"nil function":     (pessimistic.RowLock{}).Query(ctx, tx, `SELECT 1`, nil, nil),
			"nil tx":           (pessimistic.RowLock{}).Row(ctx, nil, pgx.Identifier{"order"}, "id", 1, nil),
			"empty SQL":        (pessimistic.RowLock{}).Query(ctx, tx, " ", nil, func(pgx.Rows) error { return nil }),
			"empty column":     (pessimistic.RowLock{}).Row(ctx, tx, pgx.Identifier{"order"}, "id", 1, []string{""}, new(int)),
			"unknown mode":     pessimistic.RowLock{Mode: 3}.Row(ctx, tx, pgx.Identifier{"order"}, "id", 1, nil),
			"unknown strength": pessimistic.RowLock{Strength: -1}.Row(ctx, tx, pgx.Identifier{"order"}, "id", 1, nil),
			"negative timeout": pessimistic.RowLock{Timeout: -time.Second}.Row(ctx, tx, pgx.Identifier{"order"}, "id", 1, nil),
			"empty Of":         pessimistic.RowLock{Of: []string{""}}.Row(ctx, tx, pgx.Identifier{"order"}, "id", 1, nil),
			"no condition":     (pessimistic.RowLock{}).RowWhere(ctx, tx, pgx.Identifier{"order"}, nil, nil),
		} {
			assert.ErrorIs(t, err, pessimistic.ErrInvalid, name)
		}
		return nil
	})
	require.NoError(t, err)
	_, err = pessimistic.RetryTx(ctx, db.Pool, nil, nil)
	assert.ErrorIs(t, err, pessimistic.ErrNilFunc)
	assert.ErrorIs(t, pessimistic.TryWithSessionLock(ctx, db.Pool, 1, nil), pessimistic.ErrNilFunc)
	_, err = pessimistic.TryXactLock(ctx, nil, 1)
	assert.ErrorIs(t, err, pessimistic.ErrNilDB)
}

// RowWhere locks a row by a composite key; a locked row refuses NoWait, and an empty
// condition is refused before any SQL.
func TestPessimisticRowWhereCompositeKey(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE seats (show int, "seat no" text, holder text, PRIMARY KEY (show, "seat no"));
		INSERT INTO seats VALUES (1, 'A1', ''), (1, 'A2', '')`)
	require.NoError(t, err)
	seat := func(no string) []pessimistic.Eq {
		return []pessimistic.Eq{{Column: "show", Value: 1}, {Column: "seat no", Value: no}}
	}
	holder, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer holder.Rollback(ctx)
	var who string
	require.NoError(t, (pessimistic.RowLock{}).RowWhere(ctx, holder, pgx.Identifier{"seats"}, seat("A1"), []string{"holder"}, &who))

	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		err := (pessimistic.RowLock{Mode: pessimistic.NoWait}).RowWhere(ctx, tx, pgx.Identifier{"seats"}, seat("A1"), nil)
		assert.ErrorIs(t, err, pessimistic.ErrLockNotAvailable, "A1 is held")
		// The other seat of the same show is free, and the transaction is still usable.
		return (pessimistic.RowLock{Mode: pessimistic.NoWait}).RowWhere(ctx, tx, pgx.Identifier{"seats"}, seat("A2"), nil)
	})
	require.NoError(t, err)
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		return (pessimistic.RowLock{}).RowWhere(ctx, tx, pgx.Identifier{"seats"}, nil, nil)
	})
	assert.ErrorIs(t, err, pessimistic.ErrInvalid)
}

// A bounded wait restores the caller's own lock_timeout afterwards, whether the lock was
// refused or granted, and its error says what it was locking.
func TestPessimisticLockTimeoutRestoresCallerSetting(t *testing.T) {
	t.Parallel()
	db := productsDB(t, nil, `('a', 1), ('b', 1)`)
	ctx := context.Background()
	holderPID, release := holdRow(t, db.Pool, "a")
	defer release()

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SET LOCAL lock_timeout = '7s'`)
	require.NoError(t, err)
	bound := 200 * time.Millisecond
	began := time.Now()
	err = pessimistic.RowLock{Timeout: bound}.Row(ctx, tx, productsTable, "sku", "a", nil)
	waited := time.Since(began)
	require.ErrorIs(t, err, pessimistic.ErrLockNotAvailable)
	assert.GreaterOrEqual(t, waited, bound)
	assert.Less(t, waited, bound+2*time.Second, "gave up at its bound, not the caller's 7s")
	assert.Contains(t, err.Error(), `"products" WHERE "sku" = a`)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "55P03", pgErr.Code)
	var setting string
	require.NoError(t, tx.QueryRow(ctx, `SHOW lock_timeout`).Scan(&setting))
	assert.Equal(t, "7s", setting, "restored after a refusal")
	require.NoError(t, pessimistic.RowLock{Timeout: bound}.Row(ctx, tx, productsTable, "sku", "b", nil))
	require.NoError(t, tx.QueryRow(ctx, `SHOW lock_timeout`).Scan(&setting))
	assert.Equal(t, "7s", setting, "restored after a grant")
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, holderPID),
		"nobody is left waiting on the holder")
}

// When the caller's row function fails after a guarded (NoWait or bounded) statement ran, the
// error comes back and the transaction is still usable.
func TestPessimisticQueryCallbackErrorKeepsTxUsable(t *testing.T) {
	t.Parallel()
	db := productsDB(t, nil, `('a', 1), ('b', 1)`)
	ctx := context.Background()
	boom := errors.New("cannot process row")
	for name, l := range map[string]pessimistic.RowLock{
		"nowait":  {Mode: pessimistic.NoWait},
		"timeout": {Timeout: time.Second},
		"wait":    {},
	} {
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			err := l.Query(ctx, tx, `SELECT sku FROM products ORDER BY sku`, nil, func(pgx.Rows) error { return boom })
			require.ErrorIs(t, err, boom, name)
			_, err = tx.Exec(ctx, `UPDATE products SET stock = 0 WHERE sku = 'b'`)
			return err
		})
		require.NoError(t, err, "%s: the transaction survived", name)
		assert.Zero(t, count(t, db.Pool, `SELECT stock FROM products WHERE sku = 'b'`), name)
		_, err = db.Pool.Exec(ctx, `UPDATE products SET stock = 1`)
		require.NoError(t, err)
	}
}

// The clause goes on a line of its own, so a trailing comment in the caller's SQL cannot
// swallow it and silently leave the rows unlocked.
func TestPessimisticQueryTrailingComment(t *testing.T) {
	t.Parallel()
	db := productsDB(t, nil, `('a', 1)`)
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	n := 0
	require.NoError(t, (pessimistic.RowLock{}).Query(ctx, tx, "SELECT sku FROM products WHERE sku = $1 -- the hot one", []any{"a"},
		func(pgx.Rows) error { n++; return nil }))
	assert.Equal(t, 1, n)
	err = pgx.BeginFunc(ctx, db.Pool, func(other pgx.Tx) error {
		return pessimistic.RowLock{Mode: pessimistic.NoWait}.Row(ctx, other, productsTable, "sku", "a", nil)
	})
	assert.ErrorIs(t, err, pessimistic.ErrLockNotAvailable, "the row is locked")
}

// RowWhere locks by a composite key; Lock.Of locks only the named table of a join; the
// strengths conflict as PostgreSQL documents.
func TestPessimisticRowWhereOfAndStrength(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
		CREATE TABLE invoices (tenant text, no int, customer int NOT NULL REFERENCES customers, total int NOT NULL, PRIMARY KEY (tenant, no));
		INSERT INTO customers VALUES (1, 'ann');
		INSERT INTO invoices VALUES ('acme', 1, 1, 10), ('globex', 1, 1, 20)`)
	require.NoError(t, err)
	invoices := pgx.Identifier{"invoices"}
	tryLock := func(l pessimistic.RowLock, table string, where ...pessimistic.Eq) error {
		return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			l.Mode = pessimistic.NoWait
			return l.RowWhere(ctx, tx, pgx.Identifier{table}, where, nil)
		})
	}
	acme := []pessimistic.Eq{{Column: "tenant", Value: "acme"}, {Column: "no", Value: 1}}
	globex := []pessimistic.Eq{{Column: "tenant", Value: "globex"}, {Column: "no", Value: 1}}

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	var total int
	require.NoError(t, (pessimistic.RowLock{}).RowWhere(ctx, tx, invoices, acme, []string{"total"}, &total))
	assert.Equal(t, 10, total)
	assert.ErrorIs(t, tryLock(pessimistic.RowLock{}, "invoices", acme...), pessimistic.ErrLockNotAvailable)
	assert.NoError(t, tryLock(pessimistic.RowLock{}, "invoices", globex...), "the other tenant's row is free")
	assert.ErrorIs(t, (pessimistic.RowLock{}).RowWhere(ctx, tx, invoices, []pessimistic.Eq{{Column: "tenant", Value: "acme"}, {Column: "no", Value: 2}}, nil),
		pessimistic.ErrNotFound)
	require.NoError(t, tx.Rollback(ctx))

	// A join: lock the invoice rows only, not the customer they point to.
	lockJoin := func(of []string) {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx)
		require.NoError(t, pessimistic.RowLock{Of: of}.Query(ctx, tx,
			`SELECT i.no FROM invoices i JOIN customers c ON c.id = i.customer WHERE i.tenant = 'acme'`, nil,
			func(pgx.Rows) error { return nil }))
		assert.ErrorIs(t, tryLock(pessimistic.RowLock{}, "invoices", acme...), pessimistic.ErrLockNotAvailable, "Of %v", of)
		customerErr := tryLock(pessimistic.RowLock{}, "customers", pessimistic.Eq{Column: "id", Value: 1})
		if len(of) > 0 {
			assert.NoError(t, customerErr, "Of %v leaves the customer unlocked", of)
		} else {
			assert.ErrorIs(t, customerErr, pessimistic.ErrLockNotAvailable, "without Of every table is locked")
		}
	}
	lockJoin([]string{"i"})
	lockJoin(nil)

	// Strengths: FOR KEY SHARE does not conflict with FOR NO KEY UPDATE, FOR SHARE conflicts
	// with FOR UPDATE.
	tx, err = db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	require.NoError(t, pessimistic.RowLock{Strength: pessimistic.ForKeyShare}.RowWhere(ctx, tx, invoices, acme, nil))
	assert.NoError(t, tryLock(pessimistic.RowLock{Strength: pessimistic.ForNoKeyUpdate}, "invoices", acme...))
	assert.NoError(t, tryLock(pessimistic.RowLock{Strength: pessimistic.ForShare}, "invoices", acme...))
	assert.ErrorIs(t, tryLock(pessimistic.RowLock{Strength: pessimistic.ForUpdate}, "invoices", acme...), pessimistic.ErrLockNotAvailable)
}

// Of 8 transactions released together to try one advisory lock, exactly one gets it.
func TestPessimisticAdvisoryTryLockRace(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 8})
	ctx := context.Background()
	pgtest.Warm(t, db.Pool, 8)
	key := lockKey("race")
	start, tried := make(chan struct{}), make(chan struct{})
	var triedWG, wg sync.WaitGroup
	var winners atomic.Int64
	triedWG.Add(8)
	go func() { triedWG.Wait(); close(tried) }()
	for range 8 {
		wg.Go(func() {
			tx, err := db.Pool.Begin(ctx)
			if !assert.NoError(t, err) {
				triedWG.Done()
				return
			}
			defer tx.Rollback(ctx)
			<-start
			ok, err := pessimistic.TryXactLock(ctx, tx, key)
			assert.NoError(t, err)
			if ok {
				winners.Add(1)
			}
			triedWG.Done()
			<-tried // every transaction stays open until all have tried
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int64(1), winners.Load())
}

// XactLock waits, honours lock_timeout (ErrLockNotAvailable) and ctx; the two-int form is its
// own key space.
func TestPessimisticAdvisoryXactLockWaits(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	holder, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer holder.Rollback(ctx)
	key := lockKey("xact-waits")
	key2 := int32(lockKey("xact-waits-2"))
	require.NoError(t, pessimistic.XactLock(ctx, holder, key))
	require.NoError(t, pessimistic.XactLock2(ctx, holder, 0, key2))
	holderPID, err := backendPID(ctx, holder)
	require.NoError(t, err)

	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '100ms'`)
		require.NoError(t, err)
		return pessimistic.XactLock(ctx, tx, key)
	})
	assert.ErrorIs(t, err, pessimistic.ErrLockNotAvailable)
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '100ms'`)
		require.NoError(t, err)
		return pessimistic.XactLock2(ctx, tx, 0, key2)
	})
	assert.ErrorIs(t, err, pessimistic.ErrLockNotAvailable, "(0, key2) is held")
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		ok, err := pessimistic.TryXactLock2(ctx, tx, 1, key2)
		assert.True(t, ok, "(1, key2) is another key")
		return err
	})
	require.NoError(t, err)

	// A waiter queues on the lock and gets it when the holder commits.
	got := make(chan error, 1)
	go func() {
		got <- pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return pessimistic.XactLock(ctx, tx, key) })
	}()
	waitBlockedBy(t, db.Pool, holderPID, 1)
	require.NoError(t, holder.Commit(ctx))
	assert.NoError(t, <-got)
	assert.ErrorIs(t, pessimistic.XactLock(ctx, nil, 1), pessimistic.ErrNilDB)
}

// A session lock whose caller gives up while waiting returns promptly, runs nothing and
// leaves nothing held; locks fn took itself on the connection (re-entrantly too) go with it,
// and a transaction fn left open does not keep the lock.
func TestPessimisticSessionLockCleanup(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 4})
	ctx := context.Background()
	key := lockKey("session-cleanup")
	other, err := pgx.Connect(ctx, db.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close(ctx) })
	free := func(key int64) bool {
		var ok bool
		require.NoError(t, other.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok))
		if ok {
			_, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key)
			require.NoError(t, err)
		}
		return ok
	}

	// Cancelled while waiting behind a holder.
	holding, release := make(chan int32), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- pessimistic.WithSessionLock(ctx, db.Pool, key, func(ctx context.Context, conn *pgx.Conn) error {
			holding <- int32(conn.PgConn().PID())
			<-release
			return nil
		})
	}()
	holderPID := <-holding
	wctx, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	ran := false
	go func() {
		waited <- pessimistic.WithSessionLock(wctx, db.Pool, key, func(context.Context, *pgx.Conn) error { ran = true; return nil })
	}()
	waitBlockedBy(t, db.Pool, holderPID, 1)
	cancel()
	select {
	case err := <-waited:
		assert.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not give up when its context was cancelled")
	}
	assert.False(t, ran, "fn does not run without the lock")
	// pgx closed the waiter's connection; the server must stop waiting too, or it takes the
	// lock for a moment once the holder frees it.
	waitNotBlockedBy(t, db.Pool, holderPID)
	close(release)
	require.NoError(t, <-held)
	assert.True(t, free(key), "nobody holds the lock afterwards")

	// fn takes more session locks on its connection, one of them twice.
	var used []int32 // the backends that held the lock
	extra := lockKey("session-cleanup-extra")
	err = pessimistic.WithSessionLock(ctx, db.Pool, key, func(ctx context.Context, conn *pgx.Conn) error {
		used = append(used, int32(conn.PgConn().PID()))
		_, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1), pg_advisory_lock($1), pg_advisory_lock($2)`, key, extra)
		return err
	})
	require.NoError(t, err)
	assert.True(t, free(key), "the re-entrant lock is released in full")
	assert.True(t, free(extra), "locks fn took on the connection are released")

	// fn leaves a transaction open, or failed, on the connection.
	for _, sql := range []string{`BEGIN`, `BEGIN; SELECT 1/0`} {
		_ = pessimistic.WithSessionLock(ctx, db.Pool, key, func(ctx context.Context, conn *pgx.Conn) error {
			used = append(used, int32(conn.PgConn().PID()))
			_, err := conn.Exec(ctx, sql)
			return err
		})
		assert.True(t, free(key), "released after fn left %q", sql)
	}
	// The cancelled waiter's connection was closed; the pool destroys it in the background.
	assert.Eventually(t, func() bool { return db.Pool.Stat().AcquiredConns() == 0 }, 10*time.Second, 5*time.Millisecond,
		"every connection went back")
	var advisory int
	require.NoError(t, other.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = ANY($1)`, used).Scan(&advisory))
	assert.Zero(t, advisory, "no connection that held the lock holds an advisory lock now")
	assert.Equal(t, count(t, db.Pool, `SELECT count(DISTINCT p) FROM unnest($1::int[]) p`, used),
		count(t, db.Pool, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)`, used),
		"and each is still connected: cleaned up, not closed")
}

// RetryTx: bounded attempts, ErrDeadlock on giving up, other errors at once, cancellation
// during the backoff.
func TestPessimisticRetryTxBounds(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	deadlock := &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
	calls := 0
	n, err := pessimistic.RetryTx(ctx, db.Pool, &pessimistic.RetryOptions{MaxAttempts: 3, BaseDelay: time.Millisecond},
		func(context.Context, pgx.Tx) error { calls++; return deadlock })
	assert.Equal(t, 3, n)
	assert.Equal(t, 3, calls)
	assert.ErrorIs(t, err, pessimistic.ErrDeadlock)
	var pgErr *pgconn.PgError
	assert.ErrorAs(t, err, &pgErr)

	calls = 0
	n, err = pessimistic.RetryTx(ctx, db.Pool, nil, func(_ context.Context, tx pgx.Tx) error {
		calls++
		if calls == 1 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		_, err := tx.Exec(ctx, `CREATE TABLE retried (attempt int)`)
		return err
	})
	assert.NoError(t, err)
	assert.Equal(t, 2, n, "a serialization failure is retried")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM pg_class WHERE relname = 'retried' AND relnamespace = $1::regnamespace`, db.Schema),
		"the committed attempt's work is there")

	boom := errors.New("boom")
	n, err = pessimistic.RetryTx(ctx, db.Pool, nil, func(context.Context, pgx.Tx) error { return boom })
	assert.Equal(t, 1, n, "other errors are not retried")
	assert.ErrorIs(t, err, boom)

	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	n, err = pessimistic.RetryTx(cctx, db.Pool, &pessimistic.RetryOptions{BaseDelay: time.Hour, MaxDelay: time.Hour},
		func(context.Context, pgx.Tx) error { return deadlock })
	assert.Equal(t, 1, n)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, pessimistic.ErrDeadlock, "the last attempt's error comes with it")
	assert.Less(t, time.Since(began), 10*time.Second)
	_, err = pessimistic.RetryTx(ctx, (*pgxpool.Pool)(nil), nil, func(context.Context, pgx.Tx) error { return nil })
	assert.ErrorIs(t, err, pessimistic.ErrNilDB)
}

// A row lock or advisory lock whose caller gives up while waiting returns promptly, and the
// server stops waiting too (no orphaned backend queued for the lock).
func TestPessimisticCancelledWaitLeavesNoWaiter(t *testing.T) {
	t.Parallel()
	db := productsDB(t, nil, `('a', 1)`)
	ctx := context.Background()
	holderPID, release := holdRow(t, db.Pool, "a")
	defer release()
	holder, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer holder.Rollback(ctx)
	require.NoError(t, pessimistic.XactLock(ctx, holder, lockKey("row-and-advisory")))
	advisoryPID, err := backendPID(ctx, holder)
	require.NoError(t, err)

	for name, c := range map[string]struct {
		holder int32
		wait   func(ctx context.Context, tx pgx.Tx) error
	}{
		"row wait": {holderPID, func(ctx context.Context, tx pgx.Tx) error {
			return (pessimistic.RowLock{}).Row(ctx, tx, productsTable, "sku", "a", nil)
		}},
		"row bounded wait": {holderPID, func(ctx context.Context, tx pgx.Tx) error {
			return (pessimistic.RowLock{Timeout: time.Hour}).Row(ctx, tx, productsTable, "sku", "a", nil)
		}},
		"xact advisory lock": {advisoryPID, func(ctx context.Context, tx pgx.Tx) error {
			return pessimistic.XactLock(ctx, tx, lockKey("row-and-advisory"))
		}},
	} {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			tx, err := db.Pool.Begin(ctx)
			if err != nil {
				done <- err
				return
			}
			defer tx.Rollback(ctx)
			done <- c.wait(wctx, tx)
		}()
		waitBlockedBy(t, db.Pool, c.holder, 1)
		cancel()
		select {
		case err := <-done:
			assert.Error(t, err, name)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the waiter did not give up when its context was cancelled", name)
		}
		waitNotBlockedBy(t, db.Pool, c.holder)
	}
}
