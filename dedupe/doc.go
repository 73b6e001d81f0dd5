// Package dedupe makes a write exactly-once per idempotency key, on PostgreSQL with pgx v5.
//
// Clients retry: after a timeout, a double click, a reload, or from two app servers at once.
// Checking "does this key exist?" and then inserting creates duplicates under concurrency.
// Do instead writes the request's key, with its response, into a unique-indexed table in the
// same transaction as the business write:
//
//	d := dedupe.New(nil)
//	res, err := d.Do(ctx, pool, dedupe.Request{
//		Scope:       "orders.create",
//		Key:         r.Header.Get("Idempotency-Key"),
//		Fingerprint: dedupe.Fingerprint(r.Method, r.URL.Path, body),
//	}, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
//		id, err := insertOrder(ctx, tx, order) // every write goes through tx
//		if err != nil {
//			return dedupe.Response{}, err // rolls back; the key stays free for a retry
//		}
//		return dedupe.Response{Status: 201, Body: orderJSON(id)}, nil
//	})
//	switch {
//	case errors.Is(err, dedupe.ErrFingerprintMismatch): // 422: key reused for another request
//	case errors.Is(err, dedupe.ErrInProgress):          // 409: first request still running
//	case err != nil:                                    // the function's error, or the database's
//	case res.Replayed():                                // the stored response of the first request
//	}
//
// The unique index is the authority: the key and the effect commit together or not at all. A
// concurrent duplicate waits for the first request on the key's lock (a transaction-scoped
// advisory lock on a hash of the key) and then replays; a duplicate of a committed request
// gets its stored response without running the function, and without taking the lock.
//
// The table is created by the migrations package (dedupe_keys). Expired keys are removed by
// Purge; run it periodically. At volume, Options.Layout = LayoutGenerations keeps the keys in
// generations that Purge truncates whole instead of deleting row by row (see Layout).
//
// Do and Purge keep no state between transactions and need no server-described parameter
// types, so they work in every pgx query mode and through PgBouncer in transaction pooling
// (use exec or simple_protocol there); run the migrations on a direct connection.
//
// Errors follow one rule across pgonce's packages. Outcomes callers branch on are sentinels
// defined once (ErrInProgress, ErrFingerprintMismatch, ErrUnavailable: redisguard returns
// these same values). Bad input is refused before any I/O, with nothing written, by an error
// matching the package's ErrInvalid; where callers need to tell one bad input from another
// (dedupehttp answers a bad key and a bad scope differently), a specific sentinel such as
// ErrInvalidKey or ErrNilDB also matches it.
package dedupe
