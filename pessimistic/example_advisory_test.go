package pessimistic_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/pessimistic"
)

// AdvisoryKey names advisory locks; any language can compute the same key (see AdvisoryKey's documentation).
func ExampleAdvisoryKey() {
	fmt.Println(pessimistic.AdvisoryKey("nightly-report"))
	// Output: 7440995589958059143
}

// Two transactions try the same lock: the first gets it until it ends, the second is told
// at once that it did not.
func ExampleTryXactLock() {
	ctx := context.Background()
	pool := openPool(ctx, "")
	defer pool.Close()
	key := pessimistic.AdvisoryKey("rebuild-search-index")

	first, _ := pool.Begin(ctx)
	second, _ := pool.Begin(ctx)
	defer second.Rollback(ctx)

	ok, err := pessimistic.TryXactLock(ctx, first, key)
	fmt.Println("first:", ok, err)
	ok, err = pessimistic.TryXactLock(ctx, second, key)
	fmt.Println("second:", ok, err)

	_ = first.Commit(ctx) // the lock goes with the transaction
	ok, err = pessimistic.TryXactLock(ctx, second, key)
	fmt.Println("second, later:", ok, err)
	// Output:
	// first: true <nil>
	// second: false <nil>
	// second, later: true <nil>
}

// Serialise the changes to one account across processes without a row to lock, with the
// two-int form (namespace, id).
func ExampleXactLock2() {
	ctx := context.Background()
	pool := openPool(ctx, "")
	defer pool.Close()
	const accounts = 1 // the namespace, agreed between the programs that lock accounts

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := pessimistic.XactLock2(ctx, tx, accounts, 42); err != nil {
			return err
		}
		// ... read and write what belongs to account 42; other holders wait ...
		return nil
	})
	fmt.Println(err)
	// Output: <nil>
}
