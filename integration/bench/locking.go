package bench

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/optimistic"
	"github.com/pgonce/pgonce/pessimistic"
)

// HotSKU is the one product every locking client decrements.
const HotSKU = "hot"

var hotTable = optimistic.Table{Name: pgx.Identifier{"bench_products"}, ID: "sku"}

// OptimisticHelper decrements the hot row through optimistic.Retry, Get and Update.
func OptimisticHelper(pool *pgxpool.Pool, attempts *atomic.Int64) Do {
	opts := &optimistic.RetryOptions{MaxAttempts: 1000}
	return func(ctx context.Context, _ Send) error {
		n, err := optimistic.Retry(ctx, opts, func(ctx context.Context) error {
			var stock int
			v, err := hotTable.Get(ctx, pool, HotSKU, []string{"stock"}, &stock)
			if err != nil {
				return err
			}
			_, err = hotTable.Update(ctx, pool, HotSKU, v, optimistic.Set{Column: "stock", Value: stock - 1})
			return err
		})
		attempts.Add(int64(n))
		return err
	}
}

// OptimisticByHand is the same read-and-compare-version loop written directly in SQL, retrying
// at once without backoff.
func OptimisticByHand(pool *pgxpool.Pool, attempts *atomic.Int64) Do {
	return func(ctx context.Context, _ Send) error {
		for {
			attempts.Add(1)
			var stock int
			var version int64
			if err := pool.QueryRow(ctx, `SELECT stock, version FROM bench_products WHERE sku = $1`, HotSKU).Scan(&stock, &version); err != nil {
				return err
			}
			tag, err := pool.Exec(ctx, `UPDATE bench_products SET stock = $2, version = version + 1 WHERE sku = $1 AND version = $3`, HotSKU, stock-1, version)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				return nil
			}
		}
	}
}

// ForUpdateHelper decrements the hot row under pessimistic.RowLock{}.Row in a transaction.
func ForUpdateHelper(pool *pgxpool.Pool, attempts *atomic.Int64) Do {
	table := pgx.Identifier{"bench_products"}
	return func(ctx context.Context, _ Send) error {
		attempts.Add(1)
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var stock int
			if err := (pessimistic.RowLock{}).Row(ctx, tx, table, "sku", HotSKU, []string{"stock"}, &stock); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE bench_products SET stock = $2, version = version + 1 WHERE sku = $1`, HotSKU, stock-1)
			return err
		})
	}
}

// ForUpdateByHand is the same transaction with the SELECT ... FOR UPDATE written directly.
func ForUpdateByHand(pool *pgxpool.Pool, attempts *atomic.Int64) Do {
	return func(ctx context.Context, _ Send) error {
		attempts.Add(1)
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var stock int
			if err := tx.QueryRow(ctx, `SELECT stock FROM bench_products WHERE sku = $1 FOR UPDATE`, HotSKU).Scan(&stock); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE bench_products SET stock = $2, version = version + 1 WHERE sku = $1`, HotSKU, stock-1)
			return err
		})
	}
}

// AtomicUpdate is the reference: one UPDATE ... SET stock = stock - 1, when the change can be
// expressed in SQL and needs no read in the application.
func AtomicUpdate(pool *pgxpool.Pool, attempts *atomic.Int64) Do {
	return func(ctx context.Context, _ Send) error {
		attempts.Add(1)
		tag, err := pool.Exec(ctx, `UPDATE bench_products SET stock = stock - 1, version = version + 1 WHERE sku = $1`, HotSKU)
		if err == nil && tag.RowsAffected() != 1 {
			err = errors.New("hot row missing")
		}
		return err
	}
}
