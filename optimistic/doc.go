// Package optimistic updates rows with optimistic concurrency control: a row carries an
// integer version column, a writer reads the row and its version, and writes back only if
// the version is still the one it read, so no update is lost and no lock is held in between.
//
//	products := optimistic.Table{Name: pgx.Identifier{"products"}, ID: "sku", UpdatedAt: "updated_at"}
//	attempts, err := optimistic.Retry(ctx, nil, func(ctx context.Context) error {
//		var stock int
//		version, err := products.Get(ctx, pool, "book-42", []string{"stock"}, &stock)
//		if err != nil {
//			return err
//		}
//		_, err = products.Update(ctx, pool, "book-42", version, optimistic.Set{Column: "stock", Value: stock - 1})
//		return err // a *StaleError (ErrStale) makes Retry read and try again
//	})
//
// Table.Update is one UPDATE ... WHERE id = $1 AND version = $2 that increments the version
// and returns the new one; a stale version is a *StaleError (errors.Is ErrStale), a missing
// row ErrNotFound. Retry reruns a read-and-update function on ErrStale, with a bound and
// jittered backoff. Get and Update take a Querier: a *pgxpool.Pool, a *pgx.Conn, or the
// caller's pgx.Tx. Table and column names are identifiers, quoted with pgx.Identifier; values
// are always parameters.
//
// No lock is held between the read and the write, so readers never wait and a client may
// think for as long as it likes, even across HTTP round trips: ETag renders the version for
// the ETag header, IfMatch reads it back from If-Match, and HTTPStatus turns a stale version
// into 412 Precondition Failed. The price is paid under contention: every writer that lost
// the race reads and writes again. For a hot row that many writers change at once, a row
// lock (package pessimistic) queues the writers instead.
//
// The table needs an integer version column (bigint recommended) that every update
// increments; examples/orders/migrations/0001_products.up.sql is an example.
//
// Bad input is refused before any SQL runs with an error matching ErrInvalid (a nil handle
// also matches ErrNilDB): the same rule in every pgonce package.
package optimistic
