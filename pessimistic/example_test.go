package pessimistic_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/pessimistic"
)

func openPool(ctx context.Context) *pgxpool.Pool {
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

// A hot row: lock it, check, change, commit. Concurrent writers queue on the lock.
func ExampleLock_Row() {
	ctx := context.Background()
	pool := openPool(ctx)
	defer pool.Close()
	_, _ = pool.Exec(ctx, `CREATE TABLE hot_items (sku text PRIMARY KEY, stock int NOT NULL); INSERT INTO hot_items VALUES ('mug', 3)`)

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var stock int
		if err := (pessimistic.Lock{}).Row(ctx, tx, pgx.Identifier{"hot_items"}, "sku", "mug", []string{"stock"}, &stock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE hot_items SET stock = $2 WHERE sku = $1`, "mug", stock-1)
		return err
	})
	var stock int
	_ = pool.QueryRow(ctx, `SELECT stock FROM hot_items`).Scan(&stock)
	fmt.Println(err, stock)
	// Output: <nil> 2
}

// A scheduled job that every node starts: it runs once per period.
func ExampleRunOnce() {
	ctx := context.Background()
	pool := openPool(ctx)
	defer pool.Close()
	report := func(ctx context.Context, tx pgx.Tx) error {
		fmt.Println("building the report")
		return nil
	}
	for range 2 {
		err := pessimistic.RunOnce(ctx, pool, "daily-report", "2026-11-22", nil, report)
		fmt.Println(err == nil, errors.Is(err, pessimistic.ErrAlreadyRan))
	}
	// Output:
	// building the report
	// true false
	// false true
}

// A lease from any token source (here a sequence; in production redisguard's lock): the
// holder with the newer token wins, the older one is refused.
func ExampleFencedWrite() {
	ctx := context.Background()
	pool := openPool(ctx)
	defer pool.Close()
	_, _ = pool.Exec(ctx, `CREATE TABLE nightly (id int PRIMARY KEY, writer bigint)`)
	write := func(token int64) error {
		return pessimistic.FencedWrite(ctx, pool, "nightly", token, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO nightly VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET writer = $1`, token)
			return err
		})
	}
	fmt.Println(write(5))
	fmt.Println(errors.Is(write(4), pessimistic.ErrStaleToken))
	// Output:
	// <nil>
	// true
}
