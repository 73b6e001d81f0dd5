package pessimistic_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/pessimistic"
)

// A hot row: lock it, check, change, commit. Concurrent writers queue on the lock.
func ExampleRowLock_Row() {
	ctx := context.Background()
	pool := openPool(ctx, `DROP TABLE IF EXISTS hot_items;
		CREATE TABLE hot_items (sku text PRIMARY KEY, stock int NOT NULL);
		INSERT INTO hot_items VALUES ('mug', 3)`)
	defer pool.Close()

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var stock int
		if err := (pessimistic.RowLock{}).Row(ctx, tx, pgx.Identifier{"hot_items"}, "sku", "mug", []string{"stock"}, &stock); err != nil {
			return err
		}
		if stock == 0 {
			return errors.New("sold out")
		}
		_, err := tx.Exec(ctx, `UPDATE hot_items SET stock = $2 WHERE sku = $1`, "mug", stock-1)
		return err
	})
	var stock int
	_ = pool.QueryRow(ctx, `SELECT stock FROM hot_items`).Scan(&stock)
	fmt.Println(err, stock)
	// Output: <nil> 2
}

// A request that must not queue behind a busy row: wait at most 100ms (or not at all, with
// NoWait) and report ErrLockNotAvailable. The transaction stays usable afterwards.
func ExampleRowLock_Row_timeout() {
	ctx := context.Background()
	pool := openPool(ctx, `DROP TABLE IF EXISTS seats;
		CREATE TABLE seats (id text PRIMARY KEY, holder text);
		INSERT INTO seats VALUES ('12A', NULL), ('12B', NULL)`)
	defer pool.Close()
	seats := pgx.Identifier{"seats"}

	// Someone else is booking 12A.
	other, _ := pool.Begin(ctx)
	defer other.Rollback(ctx)
	_ = pessimistic.RowLock{}.Row(ctx, other, seats, "id", "12A", nil)

	_ = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		err := pessimistic.RowLock{Timeout: 100 * time.Millisecond}.Row(ctx, tx, seats, "id", "12A", nil)
		fmt.Println(errors.Is(err, pessimistic.ErrLockNotAvailable))
		err = pessimistic.RowLock{Mode: pessimistic.NoWait}.Row(ctx, tx, seats, "id", "12A", nil)
		fmt.Println(errors.Is(err, pessimistic.ErrLockNotAvailable))
		err = pessimistic.RowLock{Mode: pessimistic.NoWait}.Row(ctx, tx, seats, "id", "12B", nil)
		fmt.Println(err)
		return nil
	})
	// Output:
	// true
	// true
	// <nil>
}

// A table keyed by two columns: lock the row of one tenant's invoice.
func ExampleRowLock_RowWhere() {
	ctx := context.Background()
	pool := openPool(ctx, `DROP TABLE IF EXISTS invoices;
		CREATE TABLE invoices (tenant text, no int, state text NOT NULL, PRIMARY KEY (tenant, no));
		INSERT INTO invoices VALUES ('acme', 1, 'open'), ('globex', 1, 'open')`)
	defer pool.Close()

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var state string
		key := []pessimistic.Eq{{Column: "tenant", Value: "acme"}, {Column: "no", Value: 1}}
		if err := (pessimistic.RowLock{}).RowWhere(ctx, tx, pgx.Identifier{"invoices"}, key, []string{"state"}, &state); err != nil {
			return err
		}
		fmt.Println("was", state)
		_, err := tx.Exec(ctx, `UPDATE invoices SET state = 'paid' WHERE tenant = $1 AND no = $2`, "acme", 1)
		return err
	})
	fmt.Println(err)
	// Output:
	// was open
	// <nil>
}

// A work queue: each worker locks a batch of rows nobody else holds, processes it and marks
// it done in the same transaction. Workers never wait for each other and never share a row.
func ExampleRowLock_Query() {
	ctx := context.Background()
	pool := openPool(ctx, `DROP TABLE IF EXISTS emails;
		CREATE TABLE emails (id int PRIMARY KEY, sent bool NOT NULL DEFAULT false);
		INSERT INTO emails (id) SELECT generate_series(1, 5)`)
	defer pool.Close()

	takeBatch := func() (ids []int, err error) {
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			err := pessimistic.RowLock{Mode: pessimistic.SkipLocked}.Query(ctx, tx,
				`SELECT id FROM emails WHERE NOT sent ORDER BY id LIMIT 3`, nil,
				func(r pgx.Rows) error {
					var id int
					err := r.Scan(&id)
					ids = append(ids, id)
					return err
				})
			if err != nil {
				return err
			}
			// ... send them ...
			_, err = tx.Exec(ctx, `UPDATE emails SET sent = true WHERE id = ANY($1)`, ids)
			return err
		})
		return ids, err
	}
	for range 3 {
		fmt.Println(takeBatch())
	}
	// Output:
	// [1 2 3] <nil>
	// [4 5] <nil>
	// [] <nil>
}
