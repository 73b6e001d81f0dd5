package integration_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/optimistic"
)

const productsDDL = `CREATE TABLE products (sku text PRIMARY KEY, name text NOT NULL DEFAULT '', stock integer NOT NULL CHECK (stock >= 0), version bigint NOT NULL DEFAULT 1)`

var products = optimistic.Table{Name: pgx.Identifier{"products"}, ID: "sku"}

// decrementOptimistic takes n units of sku through Retry: read, check, write if unchanged.
func decrementOptimistic(ctx context.Context, q optimistic.Querier, sku string, n int) (int, error) {
	return optimistic.Retry(ctx, &optimistic.RetryOptions{MaxAttempts: 1000}, func(ctx context.Context) error {
		var stock int
		v, err := products.Get(ctx, q, sku, []string{"stock"}, &stock)
		if err != nil {
			return err
		}
		_, err = products.Update(ctx, q, sku, v, optimistic.Set{Column: "stock", Value: stock - n})
		return err
	})
}

// 16 goroutines x 200 decrements of one row: no lost update, the version counts every write.
func TestOptimisticDecrementsAreExact(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 16})
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, productsDDL+`; INSERT INTO products (sku, stock) VALUES ('hot', 5000)`)
	require.NoError(t, err)
	pgtest.Warm(t, db.Pool, 16)
	var attempts atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			<-start
			for range 200 {
				n, err := decrementOptimistic(ctx, db.Pool, "hot", 1)
				if !assert.NoError(t, err) {
					return
				}
				attempts.Add(int64(n))
			}
		})
	}
	close(start)
	wg.Wait()
	var stock, version int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT stock, version FROM products`).Scan(&stock, &version))
	assert.Equal(t, 5000-16*200, stock, "no lost update")
	assert.Equal(t, 1+16*200, version, "one version per write")
	assert.GreaterOrEqual(t, attempts.Load(), int64(3200))
	t.Logf("3200 decrements took %d attempts (%.2f per success)", attempts.Load(), float64(attempts.Load())/3200)
}

func TestOptimisticStaleAndNotFound(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, productsDDL+`; INSERT INTO products (sku, stock) VALUES ('a', 10)`)
	require.NoError(t, err)

	v, err := products.Update(ctx, db.Pool, "a", 1, optimistic.Set{Column: "stock", Value: 9})
	require.NoError(t, err)
	assert.Equal(t, int64(2), v, "the new version")

	_, err = products.Update(ctx, db.Pool, "a", 1, optimistic.Set{Column: "stock", Value: 0})
	require.ErrorIs(t, err, optimistic.ErrStale)
	var stale *optimistic.StaleError
	require.ErrorAs(t, err, &stale)
	assert.Equal(t, int64(1), stale.Expected)
	assert.Equal(t, int64(2), stale.Current)
	assert.Equal(t, 412, optimistic.HTTPStatus(err))
	assert.Equal(t, 9, count(t, db.Pool, `SELECT stock FROM products`), "a stale update writes nothing")

	_, err = products.Update(ctx, db.Pool, "missing", 1, optimistic.Set{Column: "stock", Value: 0})
	require.ErrorIs(t, err, optimistic.ErrNotFound)
	assert.NotErrorIs(t, err, optimistic.ErrStale)
	_, err = products.Get(ctx, db.Pool, "missing", nil)
	require.ErrorIs(t, err, optimistic.ErrNotFound)

	// Inside a caller's transaction: rolled back with it.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = products.Update(ctx, tx, "a", 2, optimistic.Set{Column: "stock", Value: 1})
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	assert.Equal(t, 2, count(t, db.Pool, `SELECT version FROM products`))
}

// Identifiers are quoted, never interpreted; bad arguments are refused before any SQL.
func TestOptimisticIdentifiersAndBadInput(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE "order" ("key id" text PRIMARY KEY, "my value" int NOT NULL, "row version" bigint NOT NULL DEFAULT 1);
		INSERT INTO "order" VALUES ('k', 1)`)
	require.NoError(t, err)
	order := optimistic.Table{Name: pgx.Identifier{"order"}, ID: "key id", Version: "row version"}
	var val int
	v, err := order.Get(ctx, db.Pool, "k", []string{"my value"}, &val)
	require.NoError(t, err)
	_, err = order.Update(ctx, db.Pool, "k", v, optimistic.Set{Column: "my value", Value: val + 1})
	require.NoError(t, err)
	assert.Equal(t, 2, count(t, db.Pool, `SELECT "my value" FROM "order"`))

	hostile := `x" = 0; DROP TABLE "order"; --`
	_, err = order.Update(ctx, db.Pool, "k", 2, optimistic.Set{Column: hostile, Value: 1})
	require.Error(t, err, "no such column")
	_, err = optimistic.Table{Name: pgx.Identifier{hostile}}.Get(ctx, db.Pool, 1, nil)
	require.Error(t, err, "no such table")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM "order"`), "nothing was executed")

	for name, err := range map[string]error{
		"empty table": func() error { _, err := optimistic.Table{}.Get(ctx, db.Pool, 1, nil); return err }(),
		"empty part": func() error {
			_, err := optimistic.Table{Name: pgx.Identifier{"public", ""}}.Get(ctx, db.Pool, 1, nil)
			return err
		}(),
		"empty column":   func() error { _, err := order.Update(ctx, db.Pool, "k", 2, optimistic.Set{Value: 1}); return err }(),
		"nothing to set": func() error { _, err := order.Update(ctx, db.Pool, "k", 2); return err }(),
		"version column": func() error {
			_, err := order.Update(ctx, db.Pool, "k", 2, optimistic.Set{Column: "row version", Value: 9})
			return err
		}(),
		"dest mismatch":     func() error { _, err := order.Get(ctx, db.Pool, "k", []string{"my value"}); return err }(),
		"nil retry attempt": func() error { _, err := optimistic.Retry(ctx, nil, nil); return err }(),
	} {
		assert.ErrorIs(t, err, optimistic.ErrInvalid, name)
	}
}

func TestOptimisticRetryBounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stale := &optimistic.StaleError{Table: "t", ID: 1, Expected: 1, Current: 2}
	calls := 0
	n, err := optimistic.Retry(ctx, &optimistic.RetryOptions{MaxAttempts: 4}, func(context.Context) error { calls++; return stale })
	assert.Equal(t, 4, n)
	assert.Equal(t, 4, calls)
	assert.ErrorIs(t, err, optimistic.ErrExhausted)
	assert.ErrorIs(t, err, optimistic.ErrStale)

	other := errors.New("out of stock")
	n, err = optimistic.Retry(ctx, nil, func(context.Context) error { return other })
	assert.Equal(t, 1, n, "only stale versions are retried")
	assert.ErrorIs(t, err, other)

	cancelled, cancel := context.WithCancel(ctx)
	n, err = optimistic.Retry(cancelled, &optimistic.RetryOptions{MaxAttempts: 100}, func(context.Context) error { cancel(); return stale })
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, n)
}
