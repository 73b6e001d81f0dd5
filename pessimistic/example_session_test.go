package pessimistic_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/pessimistic"
)

// A long migration that commits in batches holds a lock across its transactions, so that a
// second copy started by mistake is turned away. The lock lives on one pooled connection and
// is released when the function returns, however it returns.
func ExampleWithSessionLock() {
	ctx := context.Background()
	pool := openPool(ctx, "")
	defer pool.Close()
	key := pessimistic.AdvisoryKey("backfill-prices")

	err := pessimistic.WithSessionLock(ctx, pool, key, func(ctx context.Context, conn *pgx.Conn) error {
		for batch := 1; batch <= 2; batch++ {
			if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `SELECT $1::int`, batch) // ... one batch of the backfill ...
				return err
			}); err != nil {
				return err
			}
		}
		// Meanwhile, a second copy does not get the lock.
		err := pessimistic.TryWithSessionLock(ctx, pool, key, func(context.Context, *pgx.Conn) error { return nil })
		fmt.Println("second copy:", errors.Is(err, pessimistic.ErrLockNotAvailable))
		return nil
	})
	fmt.Println("done:", err)

	err = pessimistic.TryWithSessionLock(ctx, pool, key, func(context.Context, *pgx.Conn) error { return nil })
	fmt.Println("afterwards:", err)
	// Output:
	// second copy: true
	// done: <nil>
	// afterwards: <nil>
}
