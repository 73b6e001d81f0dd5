package integration_test

import (
	"context"
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
)

// The insert-first claim (REPEATABLE READ here; joined transactions and the generations layout
// too) keeps the core's promise for concurrent duplicates: the function runs once.
func TestSameKeyConcurrentlyInsertFirst(t *testing.T) {
	t.Parallel()
	calls, _ := sameKeyAtOnce(t, dedupe.New(&dedupe.Options{TxOptions: pgx.TxOptions{IsoLevel: pgx.RepeatableRead}}), 32)
	assert.Equal(t, int64(1), calls, "the function ran once")
}

// The lock-first claim keeps the core's outcomes: a function error frees the key, replay,
// mismatch, and an expired key runs again and is replaced, leaving one key row.
func TestLockFirstOutcomes(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	ctx := context.Background()
	d := dedupe.New(&dedupe.Options{LockWait: 5 * time.Second})
	req := dedupe.Request{Scope: "lf", Key: "k", Fingerprint: []byte{1}}
	var calls atomic.Int64

	_, err := d.Do(ctx, db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		_, _ = insertOrder(&calls, req.Key)(ctx, tx)
		return dedupe.Response{}, assert.AnError
	})
	require.ErrorIs(t, err, assert.AnError)
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`), "a failed function leaves no key")

	first, err := d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.False(t, first.Replayed())
	assert.WithinDuration(t, time.Now().Add(dedupe.DefaultTTL), first.ExpiresAt, time.Minute)
	again, err := d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response)
	assert.WithinDuration(t, first.ExpiresAt, again.ExpiresAt, time.Minute)
	_, err = d.Do(ctx, db.Pool, dedupe.Request{Scope: "lf", Key: "k", Fingerprint: []byte{2}}, insertOrder(&calls, req.Key))
	assert.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)

	_, err = db.Pool.Exec(ctx, `UPDATE dedupe_keys SET created_at = now() - interval '2 seconds', expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	re, err := d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.False(t, re.Replayed(), "an expired key runs again")
	assert.Equal(t, 2, count(t, db.Pool, `SELECT count(*) FROM orders`))
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys WHERE expires_at > now() AND status = 201`))
}

// A request holding the key through the insert-first claim (a joined transaction) makes a
// lock-first duplicate wait on the key's lock, without running its function, and then replay.
// Without the lock in the insert-first claim, the duplicate would run its function, meet the
// key at its insert and roll back: exactly-once still, but the work done twice.
func TestLockFirstWaitsForInsertFirst(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	ctx := context.Background()
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "mixed", Key: "k"}

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	held, err := d.Do(ctx, tx, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	pid, err := backendPID(ctx, tx)
	require.NoError(t, err)

	var calls atomic.Int64
	done := make(chan error, 1)
	var res dedupe.Result
	go func() {
		var err error
		res, err = d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
		done <- err
	}()
	waitBlockedBy(t, db.Pool, pid, 1)
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, <-done)
	assert.True(t, res.Replayed())
	assert.Equal(t, held.Response, res.Response)
	assert.Zero(t, calls.Load(), "the duplicate waited instead of running")
}

// A replay skips the key's lock: a transaction holding it (here, by hand) does not hold up a
// committed key's replays. Without the skip the replay would wait out LockWait and fail.
func TestReplayTakesNoLock(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	ctx := context.Background()
	d := dedupe.New(&dedupe.Options{LockWait: 200 * time.Millisecond})
	req := dedupe.Request{Scope: "replay", Key: "k"}
	replayUnderHeldLock(t, d, db.Pool, req)

	// A new key with the same lock held waits, and LockWait bounds it: the lock is the key's.
	_, err := db.Pool.Exec(ctx, `DELETE FROM dedupe_keys`)
	require.NoError(t, err)
	_, err = d.Do(ctx, db.Pool, req, insertOrder(nil, req.Key))
	require.ErrorIs(t, err, dedupe.ErrInProgress)
}

// modeDedupeInsertFirst runs, in one query mode, what the default mode case (modeDedupe) does
// not: the insert-first claim of Do's own transaction (REPEATABLE READ: the key's lock and the
// claim with BEGIN, the response stored before COMMIT), and the lock-first claim's fallback
// when the key is committed while fn runs by a claim that took no lock (a pgonce release before
// the lock, during a rolling upgrade): the insert fails, fn's effect rolls back, and the
// other's response comes back.
func modeDedupeInsertFirst(t *testing.T, db modeDB, _ string) {
	ctx := context.Background()
	createOrders(t, db.check)
	rr := dedupe.New(&dedupe.Options{LockWait: 5 * time.Second, TxOptions: pgx.TxOptions{IsoLevel: pgx.RepeatableRead}})
	req := dedupe.Request{Scope: "modes", Key: "rr", Fingerprint: []byte{1, 2, 3}}
	first, err := rr.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err, "first execution stores status, headers and body")
	again, err := rr.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response, "headers and body replay as stored")

	lockFirstLosesToLocklessKey(t, dedupe.New(&dedupe.Options{LockWait: 5 * time.Second}), db.pool, db.check, "dedupe_keys")
	assert.Equal(t, 1, count(t, db.check, `SELECT count(*) FROM orders`))
}

// holdKeyLock takes req's key lock, as a claim would, in a transaction of its own that stays
// open until the test ends.
func holdKeyLock(t *testing.T, pool *pgxpool.Pool, req dedupe.Request) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	_, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock(1886351214, hashtext($1::text || E'\n' || $2::text))`, req.Scope, req.Key)
	require.NoError(t, err)
}

// replayUnderHeldLock commits req's key through d, holds the key's lock in another
// transaction until the test ends (holdKeyLock), and checks that a replay through d neither
// waits for it (d's LockWait would end the wait with ErrInProgress) nor runs fn.
func replayUnderHeldLock(t *testing.T, d *dedupe.Deduper, pool *pgxpool.Pool, req dedupe.Request) {
	t.Helper()
	ctx := context.Background()
	_, err := d.Do(ctx, pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	holdKeyLock(t, pool, req)
	res, err := d.Do(ctx, pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err, "the replay did not wait for the lock")
	assert.True(t, res.Replayed())
}

// lockFirstLosesToLocklessKey runs a lock-first Do on pool whose fn, before its own insert,
// has the key committed with the response "winner" into table through check, without the key's
// lock (as a pgonce release before the lock would): the final insert fails, fn's effect rolls
// back, and the winner's response comes back.
func lockFirstLosesToLocklessKey(t *testing.T, d *dedupe.Deduper, pool dedupe.DB, check *pgxpool.Pool, table string) {
	t.Helper()
	ctx := context.Background()
	lost := dedupe.Request{Scope: "lockless", Key: "lost"}
	res, err := d.Do(ctx, pool, lost, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		if _, err := check.Exec(ctx, `INSERT INTO `+table+` (scope, key, fingerprint, status, body, completed_at, expires_at)
			VALUES ($1, $2, '\x', 201, 'winner', now(), now() + interval '1 hour')`, lost.Scope, lost.Key); err != nil {
			return dedupe.Response{}, err
		}
		return insertOrder(nil, "loser")(ctx, tx)
	})
	require.NoError(t, err)
	assert.True(t, res.Replayed(), "the winner's response")
	assert.Equal(t, "winner", string(res.Response.Body))
	assert.Zero(t, count(t, check, `SELECT count(*) FROM orders WHERE request_key = 'loser'`), "the loser's effect rolled back")
}

// A unique violation at COMMIT from one of fn's own tables (a deferred constraint) is fn's
// error: it comes back after one run, not taken for the key's conflict and run again.
func TestDeferredUniqueViolationIsFns(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE once (v int, CONSTRAINT once_v UNIQUE (v) DEFERRABLE INITIALLY DEFERRED);
		INSERT INTO once VALUES (1)`)
	require.NoError(t, err)
	for name, d := range map[string]*dedupe.Deduper{
		"table":       dedupe.New(nil),
		"generations": dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations}),
	} {
		var calls atomic.Int64
		_, err := d.Do(ctx, db.Pool, dedupe.Request{Scope: "deferred", Key: name}, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			calls.Add(1)
			_, err := tx.Exec(ctx, `INSERT INTO once VALUES (1)`)
			return dedupe.Response{Status: 201}, err
		})
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe, name)
		assert.Equal(t, "once_v", pe.ConstraintName, name)
		assert.Equal(t, int64(1), calls.Load(), "%s: fn ran once", name)
		assert.Zero(t, count(t, db.Pool, `SELECT (SELECT count(*) FROM dedupe_keys) + (SELECT count(*) FROM dedupe_keys_g0)`), name)
	}
}
