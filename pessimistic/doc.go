// Package pessimistic holds PostgreSQL locking helpers for requests that change existing rows
// and for work that only one process may do at a time, plus fencing tokens checked in the
// database.
//
//	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		var stock int
//		// SELECT "stock" FROM "products" WHERE "sku" = $1 FOR UPDATE: held until tx ends
//		if err := (pessimistic.RowLock{}).Row(ctx, tx, pgx.Identifier{"products"}, "sku", sku, []string{"stock"}, &stock); err != nil {
//			return err
//		}
//		_, err := tx.Exec(ctx, `UPDATE products SET stock = $2 WHERE sku = $1`, sku, stock-1)
//		return err
//	})
//
// What it offers:
//
//   - RowLock: row locks (SELECT ... FOR UPDATE, or FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE)
//     on a row by key (Row, RowWhere) or on the rows of the caller's SELECT (Query), waiting,
//     NOWAIT, SKIP LOCKED, or waiting at most RowLock.Timeout (SET LOCAL lock_timeout). A lock
//     that is not available (SQLSTATE 55P03) is ErrLockNotAvailable, and with NoWait or a
//     Timeout the caller's transaction stays usable.
//
//   - XactLock, TryXactLock (and the two-int XactLock2, TryXactLock2): transaction-scoped
//     advisory locks, keyed by AdvisoryKey, a documented stable hash of a name that other languages
//     can compute. WithSessionLock and TryWithSessionLock: a session-scoped advisory lock,
//     bound to one pooled connection while a function runs and always released on it; they
//     need a direct connection, not one through PgBouncer in transaction pooling (everything
//     else here works there, in every pgx query mode).
//
//   - RunOnce: of N processes starting the same job for the same period, exactly one runs it;
//     the others learn, as an outcome and not an error, RunRunningElsewhere (running now) or
//     RunAlreadyRan (a dedupe row records the run).
//
//   - RetryTx and ErrDeadlock: rerun a whole transaction that PostgreSQL chose as a deadlock
//     victim (40P01) or failed to serialize (40001).
//
//   - Fence and FencedWrite: a write admitted only with a fencing token at least as high as
//     any recorded for the resource, so a lease holder that lost its lease while paused (GC,
//     VM freeze) cannot overwrite the newer holder's work (ErrStaleToken). Tokens come from
//     any increasing source: redisguard's lock, or a PostgreSQL sequence.
//
// Identifiers given by callers are quoted with pgx.Identifier; values are always parameters.
// Errors callers branch on are sentinels prefixed "pessimistic:", wrapped with what was being
// locked and the *pgconn.PgError, so both errors.Is and errors.As work. Bad input is refused
// before any SQL runs with an error matching ErrInvalid (a nil handle also matches ErrNilDB,
// a nil function ErrNilFunc): the same rule in every pgonce package.
package pessimistic
