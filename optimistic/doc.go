// Package optimistic updates rows with optimistic concurrency control: a row carries an
// integer version column, a writer reads the row and its version, and writes back only if the
// version is still the one it read.
//
//	products := optimistic.Table{Name: pgx.Identifier{"products"}, ID: "sku"}
//	attempts, err := optimistic.Retry(ctx, nil, func(ctx context.Context) error {
//		var stock int
//		version, err := products.Get(ctx, pool, "book-42", []string{"stock"}, &stock)
//		if err != nil {
//			return err
//		}
//		_, err = products.Update(ctx, pool, "book-42", version, optimistic.Set{Column: "stock", Value: stock - 1})
//		return err // a stale version makes Retry read and try again
//	})
//
// No lock is held between the read and the write, so readers never wait and a request may
// think for as long as it likes (across an HTTP round trip: see ETag and IfMatch). The price is
// paid under contention: every writer that lost the race reads and writes again. For a hot
// row that many writers change at once, a row lock (package pessimistic) queues the writers
// instead of making them retry.
//
// The table needs an integer version column (bigint recommended) that every update
// increments; Update does that. examples/orders/migrations/0001_products.up.sql is an example.
package optimistic
