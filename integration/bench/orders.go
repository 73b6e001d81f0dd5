package bench

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
)

// Products is how many products the order workload spreads its orders over: enough that
// most orders do not queue behind each other's row lock, few enough that some do.
const Products = 100

// seedProducts is part of Reset: the order workload's products.
const seedProducts = `INSERT INTO bench_products (sku, stock) SELECT 'p' || i, 1000000000 FROM generate_series(0, 99) i`

// productOf picks the product an order is for, from its key, so that both sends of a
// duplicate pair order the same product.
func productOf(key string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return fmt.Sprintf("p%d", h.Sum32()%Products)
}

// placeOrder is a realistic business write: lock the product, decrement its stock, insert
// the order (three statements).
func placeOrder(ctx context.Context, tx pgx.Tx, s Send) (int64, error) {
	sku := productOf(s.Key)
	var stock int64
	if err := tx.QueryRow(ctx, `SELECT stock FROM bench_products WHERE sku = $1 FOR UPDATE`, sku).Scan(&stock); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `UPDATE bench_products SET stock = stock - 1 WHERE sku = $1`, sku); err != nil {
		return 0, err
	}
	return insertOrder(ctx, tx, s)
}

// OrdersPlain is the order workload in pgx.BeginFunc, no deduplication: 5 round trips.
func OrdersPlain(pool *pgxpool.Pool) Do {
	return func(ctx context.Context, s Send) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := placeOrder(ctx, tx, s)
			return err
		})
	}
}

// OrdersToolkit is the order workload in dedupe.Do.
func OrdersToolkit(pool *pgxpool.Pool, d *dedupe.Deduper) Do {
	return func(ctx context.Context, s Send) error {
		_, err := d.Do(ctx, pool, dedupe.Request{
			Scope:       "bench.orders",
			Key:         s.Key,
			Fingerprint: dedupe.Fingerprint("POST", "/orders", s.Payload),
		}, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			id, err := placeOrder(ctx, tx, s)
			return dedupe.Response{Status: 201, Body: fmt.Appendf(nil, `{"id":%d}`, id)}, err
		})
		return err
	}
}
