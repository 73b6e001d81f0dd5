package pessimistic

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

const (
	sqlXactLock     = `/* pgonce:advisory_xact_lock */ SELECT pg_advisory_xact_lock($1)`
	sqlTryXactLock  = `/* pgonce:try_advisory_xact_lock */ SELECT pg_try_advisory_xact_lock($1)`
	sqlXactLock2    = `/* pgonce:advisory_xact_lock */ SELECT pg_advisory_xact_lock($1, $2)`
	sqlTryXactLock2 = `/* pgonce:try_advisory_xact_lock */ SELECT pg_try_advisory_xact_lock($1, $2)`
)

// XactLock takes the transaction-scoped advisory lock key (see AdvisoryKey) in tx with
// pg_advisory_xact_lock, waiting for it as long as ctx allows (and the session's
// lock_timeout: then ErrLockNotAvailable). PostgreSQL releases it when tx commits or rolls
// back; there is no unlock, so it cannot be leaked. If waiting creates a cycle with other
// locks, PostgreSQL aborts tx with ErrDeadlock. One statement; the lock is held until tx ends.
func XactLock(ctx context.Context, tx pgx.Tx, key int64) error {
	if tx == nil {
		return ErrNilDB
	}
	_, err := tx.Exec(ctx, sqlXactLock, key)
	cancelOrphan(ctx, tx.Conn().PgConn(), err)
	return lockErr(err, fmt.Sprintf("advisory lock %d", key))
}

// TryXactLock takes the transaction-scoped advisory lock key in tx if no other session holds
// it (pg_try_advisory_xact_lock) and reports whether it did. It never waits. Of several
// transactions trying the same key, exactly one gets true until it ends. One statement.
func TryXactLock(ctx context.Context, tx pgx.Tx, key int64) (bool, error) {
	if tx == nil {
		return false, ErrNilDB
	}
	var ok bool
	err := tx.QueryRow(ctx, sqlTryXactLock, key).Scan(&ok)
	return ok, err
}

// XactLock2 is XactLock for the two-int form (namespace, key), for callers that already have
// small integer ids ("the lock for account 42 in namespace 7"). It is a key space separate
// from the one-int form's: XactLock2(7, 42) never conflicts with XactLock(anything).
func XactLock2(ctx context.Context, tx pgx.Tx, namespace, key int32) error {
	if tx == nil {
		return ErrNilDB
	}
	_, err := tx.Exec(ctx, sqlXactLock2, namespace, key)
	cancelOrphan(ctx, tx.Conn().PgConn(), err)
	return lockErr(err, fmt.Sprintf("advisory lock (%d, %d)", namespace, key))
}

// TryXactLock2 is TryXactLock for the two-int form.
func TryXactLock2(ctx context.Context, tx pgx.Tx, namespace, key int32) (bool, error) {
	if tx == nil {
		return false, ErrNilDB
	}
	var ok bool
	err := tx.QueryRow(ctx, sqlTryXactLock2, namespace, key).Scan(&ok)
	return ok, err
}
