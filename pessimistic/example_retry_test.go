package pessimistic_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/pessimistic"
)

// A transfer that locks two rows: if PostgreSQL picks it as a deadlock victim (another
// transfer locking the same rows in the other order), RetryTx runs it again whole.
func ExampleRetryTx() {
	ctx := context.Background()
	pool := openPool(ctx, `DROP TABLE IF EXISTS wallets;
		CREATE TABLE wallets (id text PRIMARY KEY, balance int NOT NULL);
		INSERT INTO wallets VALUES ('ann', 100), ('bob', 100)`)
	defer pool.Close()
	wallets := pgx.Identifier{"wallets"}

	transfer := func(from, to string, amount int) func(context.Context, pgx.Tx) error {
		return func(ctx context.Context, tx pgx.Tx) error {
			for _, id := range []string{from, to} {
				if err := (pessimistic.RowLock{}).Row(ctx, tx, wallets, "id", id, nil); err != nil {
					return err // ErrDeadlock makes RetryTx roll back and run this again
				}
			}
			_, err := tx.Exec(ctx, `UPDATE wallets SET balance = balance + CASE id WHEN $1 THEN -$3::int ELSE $3::int END
				WHERE id IN ($1, $2)`, from, to, amount)
			return err
		}
	}
	attempts, err := pessimistic.RetryTx(ctx, pool, nil, transfer("ann", "bob", 30))
	fmt.Println(attempts, err)

	var ann, bob int
	_ = pool.QueryRow(ctx, `SELECT (SELECT balance FROM wallets WHERE id = 'ann'), (SELECT balance FROM wallets WHERE id = 'bob')`).Scan(&ann, &bob)
	fmt.Println(ann, bob)
	// Output:
	// 1 <nil>
	// 70 130
}
