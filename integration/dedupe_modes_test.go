package integration_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
)

// Joining a caller's transaction: the key commits or vanishes with it.
func TestJoinOuterTransaction(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(nil)
	ctx := context.Background()
	req := dedupe.Request{Scope: "orders", Key: "joined"}
	var calls atomic.Int64

	t.Run("outer rollback removes the key", func(t *testing.T) {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		res, err := d.Do(ctx, tx, req, insertOrder(&calls, req.Key))
		require.NoError(t, err)
		assert.False(t, res.Replayed())
		require.NoError(t, tx.Rollback(ctx))
		assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))
		assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM orders`))
	})

	t.Run("function error leaves the outer transaction usable", func(t *testing.T) {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx)
		_, err = tx.Exec(ctx, `INSERT INTO orders (request_key, note) VALUES ('outer', 'before')`)
		require.NoError(t, err)
		boom := errors.New("boom")
		_, err = d.Do(ctx, tx, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			// A failing statement aborts the transaction; the savepoint must repair it.
			_, _ = tx.Exec(ctx, `SELECT 1/0`)
			return dedupe.Response{}, boom
		})
		require.ErrorIs(t, err, boom)
		var n int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM dedupe_keys`).Scan(&n), "outer transaction still usable")
		assert.Zero(t, n, "key freed inside the outer transaction")
		require.NoError(t, tx.Commit(ctx))
		assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders WHERE request_key = 'outer'`), "outer work kept")
		assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))
	})

	t.Run("outer commit keeps key and effect; replay inside another transaction", func(t *testing.T) {
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			_, err := d.Do(ctx, tx, req, insertOrder(&calls, req.Key))
			return err
		})
		require.NoError(t, err)
		err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			res, err := d.Do(ctx, tx, req, insertOrder(&calls, req.Key))
			assert.True(t, res.Replayed())
			return err
		})
		require.NoError(t, err)
		assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders WHERE request_key = $1`, req.Key))
	})

	t.Run("joining a finished transaction is refused", func(t *testing.T) {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, tx.Rollback(ctx))
		_, err = d.Do(ctx, tx, dedupe.Request{Scope: "orders", Key: "late"}, insertOrder(&calls, "late"))
		assert.Error(t, err)
	})
}

// A bounded wait changes lock_timeout for the claim only; the function and the caller's
// transaction see their own setting.
func TestLockWaitRestoresLockTimeout(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	d := dedupe.New(&dedupe.Options{LockWait: 250 * time.Millisecond})
	ctx := context.Background()
	show := func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		var v string
		err := tx.QueryRow(ctx, `SHOW lock_timeout`).Scan(&v)
		return dedupe.Response{Status: 200, Body: []byte(v)}, err
	}
	res, err := d.Do(ctx, db.Pool, dedupe.Request{Scope: "s", Key: "own"}, show)
	require.NoError(t, err)
	assert.Equal(t, "0", string(res.Response.Body))

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SET LOCAL lock_timeout = '7s'`)
	require.NoError(t, err)
	res, err = d.Do(ctx, tx, dedupe.Request{Scope: "s", Key: "joined"}, show)
	require.NoError(t, err)
	assert.Equal(t, "7s", string(res.Response.Body))
	_, err = d.Do(ctx, tx, dedupe.Request{Scope: "s", Key: "joined"}, show) // replay path
	require.NoError(t, err)
	var after string
	require.NoError(t, tx.QueryRow(ctx, `SHOW lock_timeout`).Scan(&after))
	assert.Equal(t, "7s", after)
}

// beginOnly hides every method but Begin, as a caller's own wrapper might.
type beginOnly struct{ pool *pgxpool.Pool }

func (b beginOnly) Begin(ctx context.Context) (pgx.Tx, error) { return b.pool.Begin(ctx) }

// Do works on a pool, a single connection and any Begin-only handle.
func TestHandles(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(nil)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)

	for name, h := range map[string]dedupe.DB{"pool": db.Pool, "conn": conn, "begin-only": beginOnly{db.Pool}} {
		t.Run(name, func(t *testing.T) {
			req := dedupe.Request{Scope: "handles", Key: name}
			for i := range 2 {
				res, err := d.Do(ctx, h, req, insertOrder(nil, name))
				require.NoError(t, err)
				assert.Equal(t, i == 1, res.Replayed())
			}
			assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders WHERE request_key = $1`, name))
		})
	}
	assert.Equal(t, byte('I'), conn.PgConn().TxStatus(), "the connection is left outside a transaction")
	assert.Zero(t, db.Pool.Stat().AcquiredConns(), "every pooled connection went back")
}

// A panic in the function rolls back, returns the connection, frees the key, and propagates.
func TestFunctionPanic(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(nil)
	ctx := context.Background()
	req := dedupe.Request{Scope: "orders", Key: "panics"}
	assert.PanicsWithValue(t, "handler bug", func() {
		_, _ = d.Do(ctx, db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			if _, err := insertOrder(nil, req.Key)(ctx, tx); err != nil {
				return dedupe.Response{}, err
			}
			panic("handler bug")
		})
	})
	assert.Zero(t, db.Pool.Stat().AcquiredConns())
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM orders`))
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	assert.Panics(t, func() {
		_, _ = d.Do(ctx, tx, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) { panic("joined bug") })
	})
	var n int
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM dedupe_keys`).Scan(&n))
	assert.Zero(t, n)
	require.NoError(t, tx.Rollback(ctx))
}

// A function that ends its transaction itself is reported: Commit is refused, and a COMMIT
// sent as SQL leaves its key committed without a response, which retries are told about.
func TestFunctionEndsTransaction(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	d := dedupe.New(nil)
	ctx := context.Background()
	createOrders(t, db.Pool)
	rr := dedupe.New(&dedupe.Options{TxOptions: pgx.TxOptions{IsoLevel: pgx.RepeatableRead}})
	for name, d := range map[string]*dedupe.Deduper{"lock-first": d, "insert-first": rr} {
		// Commit is refused, sending nothing: the insert stays uncommitted and rolls back.
		req := dedupe.Request{Scope: "commit-" + name, Key: "k"}
		_, err := d.Do(ctx, db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			if _, err := insertOrder(nil, req.Scope)(ctx, tx); err != nil {
				return dedupe.Response{}, err
			}
			return dedupe.Response{Status: 200}, tx.Commit(ctx)
		})
		require.ErrorIs(t, err, dedupe.ErrTxEnded, name)
		assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM orders WHERE request_key = $1`, req.Scope), name)
		res, err := d.Do(ctx, db.Pool, req, insertOrder(nil, req.Scope))
		require.NoError(t, err, "%s: the key stayed free", name)
		assert.False(t, res.Replayed(), name)

		// A COMMIT sent as SQL commits fn's writes; the key is committed with them or right
		// after, without a response, so a retry does not run again.
		req = dedupe.Request{Scope: "sql-commit-" + name, Key: "k"}
		_, err = d.Do(ctx, db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			if _, err := insertOrder(nil, req.Scope)(ctx, tx); err != nil {
				return dedupe.Response{}, err
			}
			_, err := tx.Exec(ctx, `COMMIT`)
			return dedupe.Response{Status: 200}, err
		})
		require.ErrorIs(t, err, dedupe.ErrTxEnded, name)
		assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders WHERE request_key = $1`, req.Scope), name)
		_, err = d.Do(ctx, db.Pool, req, insertOrder(nil, req.Scope))
		require.ErrorIs(t, err, dedupe.ErrIncomplete, "%s: the committed key has no response", name)
		assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM orders WHERE request_key = $1`, req.Scope), name)
	}

	_, err := d.Do(ctx, db.Pool, dedupe.Request{Scope: "s", Key: "swallows"}, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		_, _ = tx.Exec(ctx, `SELECT 1/0`)
		return dedupe.Response{Status: 200}, nil
	})
	require.ErrorIs(t, err, dedupe.ErrTxEnded)
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys WHERE key = 'swallows'`))
	assert.Zero(t, db.Pool.Stat().AcquiredConns())
}

// A response over the limit rolls back the effect; headers and an empty body round-trip.
func TestResponseLimitsAndShape(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	ctx := context.Background()
	small := dedupe.New(&dedupe.Options{MaxResponseBytes: 64})
	_, err := small.Do(ctx, db.Pool, dedupe.Request{Scope: "s", Key: "big"}, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		if _, err := insertOrder(nil, "big")(ctx, tx); err != nil {
			return dedupe.Response{}, err
		}
		return dedupe.Response{Status: 200, Body: []byte(strings.Repeat("x", 65))}, nil
	})
	require.ErrorIs(t, err, dedupe.ErrResponseTooLarge)
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM orders`))

	d := dedupe.New(nil)
	for _, resp := range []dedupe.Response{
		{Status: 204},
		{Status: 201, Header: map[string][]string{"Set-Cookie": {"a=1", "b=2"}, "Location": {"/x"}}, Body: []byte{0, 1, 2, 255}},
	} {
		req := dedupe.Request{Scope: "shape", Key: string(rune('a' + resp.Status%26))}
		first, err := d.Do(ctx, db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) { return resp, nil })
		require.NoError(t, err)
		again, err := d.Do(ctx, db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			return dedupe.Response{}, errors.New("must not run")
		})
		require.NoError(t, err)
		assert.True(t, again.Replayed())
		assert.Equal(t, resp.Status, again.Response.Status)
		assert.Equal(t, resp.Header, again.Response.Header)
		assert.Equal(t, string(resp.Body), string(again.Response.Body))
		assert.Equal(t, first.Response.Status, again.Response.Status)
	}
}

// On a connection that has never run Do's statements, a failed function in a joined
// transaction must still be undone (regression: the undo was a batch whose RELEASE PostgreSQL
// refused to parse in the aborted transaction).
func TestJoinedUndoOnFreshConnection(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	for name, fail := range map[string]func(context.Context, pgx.Tx) (dedupe.Response, error){
		"statement error": func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			_, err := tx.Exec(ctx, `SELECT 1/0`)
			return dedupe.Response{}, err
		},
		"returned error": func(context.Context, pgx.Tx) (dedupe.Response, error) {
			return dedupe.Response{}, errors.New("refused")
		},
	} {
		conn, err := pgx.Connect(ctx, db.URL) // fresh: empty statement cache
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(ctx) })
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		_, err = dedupe.New(nil).Do(ctx, tx, dedupe.Request{Scope: "fresh", Key: name}, fail)
		require.Error(t, err, name)
		var one int
		require.NoError(t, tx.QueryRow(ctx, `SELECT 1`).Scan(&one), "%s: the caller's transaction is usable", name)
		require.NoError(t, tx.Commit(ctx))
		require.NoError(t, conn.Close(ctx))
	}
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))
}
