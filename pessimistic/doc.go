// Package pessimistic holds locking helpers for PostgreSQL, for the cases where a request
// changes existing rows, or where only one process may do a piece of work:
//
//   - Lock: row locks (SELECT ... FOR UPDATE) with NOWAIT, SKIP LOCKED and a bounded wait
//     (lock_timeout), inside a savepoint so a refused lock leaves the transaction usable;
//     ErrLockNotAvailable for SQLSTATE 55P03.
//
//   - XactLock, TryXactLock, WithSessionLock: advisory locks keyed by a documented, stable
//     hash of a name (Key); the session form is bound to one pooled connection until released.
//
//   - RunOnce: of N processes starting the same job for the same period, exactly one runs it;
//     the others learn ErrTaken or ErrAlreadyRan.
//
//   - RetryTx and ErrDeadlock: rerun a whole transaction that PostgreSQL chose as a deadlock
//     victim (40P01) or failed to serialize (40001).
//
//   - Fence and FencedWrite: fencing tokens checked in the database, so a lease holder that
//     lost its lease while paused (GC, VM freeze) cannot overwrite the newer holder's work:
//
//     err := pessimistic.FencedWrite(ctx, pool, "report:2026-11-22", lock.Token(), func(ctx context.Context, tx pgx.Tx) error {
//     _, err := tx.Exec(ctx, `UPDATE reports SET body = $1 WHERE day = $2`, body, day)
//     return err
//     })
//     if errors.Is(err, pessimistic.ErrStaleToken) {
//     // a newer holder has written; this one lost its lease
//     }
//
// Identifiers given by callers are quoted with pgx.Identifier; values are always parameters.
package pessimistic
