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
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ordermigrations "github.com/pgonce/pgonce/examples/orders/migrations"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/optimistic"
)

const productsDDL = `CREATE TABLE products (sku text PRIMARY KEY, name text NOT NULL DEFAULT '', stock integer NOT NULL CHECK (stock >= 0), version bigint NOT NULL DEFAULT 1)`

// productsDB is a test database holding productsDDL's table with the given rows
// (an SQL VALUES list of (sku, stock)).
func productsDB(t *testing.T, opts *pgtest.Options, values string) *pgtest.DB {
	t.Helper()
	db := harness.DB(t, opts)
	_, err := db.Pool.Exec(context.Background(), productsDDL+`; INSERT INTO products (sku, stock) VALUES `+values)
	require.NoError(t, err)
	return db
}

var products = optimistic.Table{Name: pgx.Identifier{"products"}, ID: "sku"}

// 16 goroutines x 200 decrements of one row: no lost update, the version counts every write,
// and Retry's attempt counts add up to exactly the calls it made (successes + stale ones).
func TestOptimisticDecrementsAreExact(t *testing.T) {
	t.Parallel()
	db := productsDB(t, &pgtest.Options{MaxConns: 16}, `('hot', 5000)`)
	ctx := context.Background()
	pgtest.Warm(t, db.Pool, 16)
	var reported, calls, stale atomic.Int64
	attempt := func(ctx context.Context) error {
		calls.Add(1)
		var stock int
		v, err := products.Get(ctx, db.Pool, "hot", []string{"stock"}, &stock)
		if err != nil {
			return err
		}
		_, err = products.Update(ctx, db.Pool, "hot", v, optimistic.Set{Column: "stock", Value: stock - 1})
		if errors.Is(err, optimistic.ErrStale) {
			stale.Add(1)
		}
		return err
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	began := time.Now()
	for range 16 {
		wg.Go(func() {
			<-start
			for range 200 {
				n, err := optimistic.Retry(ctx, &optimistic.RetryOptions{MaxAttempts: 1000}, attempt)
				if !assert.NoError(t, err) {
					return
				}
				reported.Add(int64(n))
			}
		})
	}
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	var stock, version int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT stock, version FROM products`).Scan(&stock, &version))
	assert.Equal(t, 5000-16*200, stock, "no lost update")
	assert.Equal(t, 1+16*200, version, "one version per write")
	assert.Equal(t, calls.Load(), reported.Load(), "Retry reports every call it made")
	assert.Equal(t, int64(3200)+stale.Load(), calls.Load(), "each call either wrote or was stale")
	assert.Positive(t, stale.Load(), "the writers really collided")
	t.Logf("3200 decrements: %d attempts (%.2f per success, %d stale) in %v", reported.Load(),
		float64(reported.Load())/3200, stale.Load(), elapsed.Round(time.Millisecond))
}

func TestOptimisticStaleAndNotFound(t *testing.T) {
	t.Parallel()
	db := productsDB(t, nil, `('a', 10)`)
	ctx := context.Background()

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

	// Inside a caller's transaction: rolled back with it; a stale version inside it leaves
	// the transaction usable.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = products.Update(ctx, tx, "a", 1, optimistic.Set{Column: "stock", Value: 1})
	require.ErrorIs(t, err, optimistic.ErrStale)
	v, err = products.Update(ctx, tx, "a", 2, optimistic.Set{Column: "stock", Value: 1})
	require.NoError(t, err, "the transaction survived the stale update")
	assert.Equal(t, int64(3), v)
	require.NoError(t, tx.Rollback(ctx))
	assert.Equal(t, 2, count(t, db.Pool, `SELECT version FROM products`))

	// On a single connection.
	conn, err := pgx.Connect(ctx, db.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var stock int
	v, err = products.Get(ctx, conn, "a", []string{"stock"}, &stock)
	require.NoError(t, err)
	assert.Equal(t, []any{int64(2), 9}, []any{v, stock})
}

// The example migration's table works with Table, and Table.UpdatedAt is set to the
// transaction's now() by the same statement.
func TestOptimisticExampleMigrationAndUpdatedAt(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	up, err := ordermigrations.FS.ReadFile("0001_products.up.sql")
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, string(up))
	require.NoError(t, err)
	rows, err := db.Pool.Query(ctx, `SELECT column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '-')
		FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'products' ORDER BY ordinal_position`, db.Schema)
	require.NoError(t, err)
	columns, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{
		"sku text NO -",
		"name text NO -",
		"stock integer NO -",
		"version bigint NO 1",
		"updated_at timestamp with time zone NO now()",
	}, columns, "the table shape optimistic.Table expects")
	_, err = db.Pool.Exec(ctx, `INSERT INTO products (sku, name, stock, updated_at) VALUES ('a', 'A', 5, '2000-01-01Z')`)
	require.NoError(t, err)
	table := optimistic.Table{Name: pgx.Identifier{"products"}, ID: "sku", UpdatedAt: "updated_at"}

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = table.Update(ctx, tx, "a", 1, optimistic.Set{Column: "stock", Value: 4})
	require.NoError(t, err)
	var fresh bool
	require.NoError(t, tx.QueryRow(ctx, `SELECT updated_at = now() FROM products`).Scan(&fresh))
	assert.True(t, fresh, "updated_at is the transaction's now()")
	require.NoError(t, tx.Commit(ctx))

	_, err = table.Update(ctx, db.Pool, "a", 2, optimistic.Set{Column: "updated_at", Value: time.Now()})
	assert.ErrorIs(t, err, optimistic.ErrInvalid, "UpdatedAt is Update's to set")
	_, err = table.Update(ctx, db.Pool, "a", 1, optimistic.Set{Column: "stock", Value: 0})
	require.ErrorIs(t, err, optimistic.ErrStale)
	assert.Equal(t, 4, count(t, db.Pool, `SELECT stock FROM products`), "a stale update touches nothing")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM products WHERE updated_at > '2001-01-01Z'`))
	_, err = table.Update(ctx, db.Pool, "a", 2, optimistic.Set{Column: "stock", Value: -1})
	assert.Error(t, err, "the CHECK constraint holds")

	down, err := ordermigrations.FS.ReadFile("0001_products.down.sql")
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, string(down))
	require.NoError(t, err)
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM pg_class WHERE relname = 'products' AND relnamespace = $1::regnamespace`, db.Schema))
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

	// A table name with a space, schema-qualified.
	_, err = db.Pool.Exec(ctx, `CREATE TABLE "stock item" (id int PRIMARY KEY, qty int NOT NULL, version bigint NOT NULL DEFAULT 1);
		INSERT INTO "stock item" VALUES (7, 3)`)
	require.NoError(t, err)
	spaced := optimistic.Table{Name: pgx.Identifier{db.Schema, "stock item"}}
	v, err = spaced.Update(ctx, db.Pool, 7, 1, optimistic.Set{Column: "qty", Value: 2})
	require.NoError(t, err)
	assert.Equal(t, int64(2), v)
	assert.Equal(t, 2, count(t, db.Pool, `SELECT qty FROM "stock item"`))

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
		"nil querier":       func() error { _, err := order.Get(ctx, nil, "k", nil); return err }(),
		"nil pool": func() error {
			_, err := order.Update(ctx, (*pgxpool.Pool)(nil), "k", 2, optimistic.Set{Column: "my value", Value: 1})
			return err
		}(),
	} {
		assert.ErrorIs(t, err, optimistic.ErrInvalid, name)
		if strings.HasPrefix(name, "nil querier") || name == "nil pool" {
			assert.ErrorIs(t, err, optimistic.ErrNilDB, name)
		}
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

	// Backoff: with equal jitter the waits before retries 1..3 are at least 10, 20 and 40ms.
	began := time.Now()
	n, err = optimistic.Retry(ctx, &optimistic.RetryOptions{MaxAttempts: 4, BaseDelay: 20 * time.Millisecond, MaxDelay: time.Second},
		func(context.Context) error { return stale })
	assert.Equal(t, 4, n)
	assert.ErrorIs(t, err, optimistic.ErrExhausted)
	assert.GreaterOrEqual(t, time.Since(began), 70*time.Millisecond, "Retry waits between attempts")

	// A cancelled context ends a backoff sleep early.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	began = time.Now()
	n, err = optimistic.Retry(short, &optimistic.RetryOptions{BaseDelay: time.Hour, MaxDelay: time.Hour}, func(context.Context) error { return stale })
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 1, n)
	assert.Less(t, time.Since(began), 10*time.Second, "the sleep did not outlive the context")
}
