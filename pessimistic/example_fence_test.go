package pessimistic_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/pessimistic"
)

// A lease from any token source (here fixed numbers; in production redisguard's lock): the
// holder with the newer token wins, the older one is refused and writes nothing.
func ExampleFencedWrite() {
	ctx := context.Background()
	pool := openPool(ctx, `DROP TABLE IF EXISTS nightly; CREATE TABLE nightly (id int PRIMARY KEY, writer bigint)`)
	defer pool.Close()
	write := func(token int64) error {
		return pessimistic.FencedWrite(ctx, pool, "nightly", token, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO nightly VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET writer = $1`, token)
			return err
		})
	}
	fmt.Println(write(5))
	err := write(4) // a holder that was paused while its lease ran out
	var stale *pessimistic.StaleTokenError
	fmt.Println(errors.Is(err, pessimistic.ErrStaleToken), errors.As(err, &stale) && stale.Current == 5)

	var writer int64
	_ = pool.QueryRow(ctx, `SELECT writer FROM nightly`).Scan(&writer)
	fmt.Println(writer)
	// Output:
	// <nil>
	// true true
	// 5
}
