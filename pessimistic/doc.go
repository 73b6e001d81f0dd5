// Package pessimistic holds locking helpers for PostgreSQL: fencing tokens checked in the
// database (Fence), and, as the package grows, row locks and advisory locks.
//
// A lease lock (redisguard's, or any other) can expire while its holder is paused; then two
// holders believe they hold it. Fence makes the database refuse the older one:
//
//	err := pessimistic.FencedWrite(ctx, pool, "report:2026-11-22", lock.Token(), func(ctx context.Context, tx pgx.Tx) error {
//		_, err := tx.Exec(ctx, `UPDATE reports SET body = $1 WHERE day = $2`, body, day)
//		return err
//	})
//	if errors.Is(err, pessimistic.ErrStaleToken) {
//		// a newer holder has written; this one lost its lease
//	}
package pessimistic
