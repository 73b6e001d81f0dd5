package pessimistic

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	sqlSessionLock    = `/* pgonce:advisory_lock */ SELECT pg_advisory_lock($1)`
	sqlTrySessionLock = `/* pgonce:try_advisory_lock */ SELECT pg_try_advisory_lock($1)`
	// Every session-level advisory lock of the connection: the one taken here, and any that fn
	// took on the connection itself (re-entrantly too). A pooled connection goes back holding none.
	sqlUnlockAll = `/* pgonce:advisory_unlock_all */ SELECT pg_advisory_unlock_all()`
	sqlRollback  = `/* pgonce:rollback */ ROLLBACK`
)

// WithSessionLock holds the session-scoped advisory lock key (see AdvisoryKey) while fn runs: it
// acquires one connection from pool, takes the lock on it with pg_advisory_lock (waiting as
// long as ctx allows), runs fn, then releases every session advisory lock of that connection
// and hands it back to the pool. The lock outlives transactions, so fn may commit several.
//
// The lock is bound to that one connection, and only WithSessionLock can end it: fn gets the
// *pgx.Conn, which has no way back to the pool, so the lock can be neither released on
// another pooled connection nor forgotten on this one. The release happens when fn returns,
// when it panics (the panic continues after), and when ctx is cancelled, with its own short
// deadline; a transaction fn left open on the connection is rolled back first. If the release
// cannot run, the connection is closed, which ends the session and, as soon as the server
// notices, its locks.
//
// A lock statement that fails (ctx cancelled, lock_timeout) is cleaned up the same way,
// since a session lock granted just before a cancel survives the error. When ctx ends the
// wait, the server is told to stop waiting as well: pgx only closes the connection, and the
// server would otherwise still take the lock, for a moment, once it is freed.
//
// Cost: a pool acquire, one statement to lock and one to unlock; a connection is held for as
// long as fn runs. Advisory locks are re-entrant within a session but not across pooled
// connections: calling WithSessionLock for the same key from inside fn waits for ever.
//
// It needs a session: give it a pool on a direct connection, never one through PgBouncer in
// transaction (or statement) pooling. There the lock is taken on whichever server connection
// ran the statement, which then serves other clients: fn runs unprotected, the release may
// reach another server connection, and the lock stays behind for that connection's next
// client. This cannot be detected reliably from the client; behind such a pooler use
// XactLock in a transaction.
func WithSessionLock(ctx context.Context, pool *pgxpool.Pool, key int64, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	return withSessionLock(ctx, pool, key, false, fn)
}

// TryWithSessionLock is WithSessionLock that does not wait: when another session holds the
// lock it returns an error wrapping ErrLockNotAvailable at once and fn does not run. Like WithSessionLock it needs a
// session: not through a transaction pooler.
func TryWithSessionLock(ctx context.Context, pool *pgxpool.Pool, key int64, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	return withSessionLock(ctx, pool, key, true, fn)
}

func withSessionLock(ctx context.Context, pool *pgxpool.Pool, key int64, try bool, fn func(context.Context, *pgx.Conn) error) error {
	if fn == nil {
		return ErrNilFunc
	}
	if pool == nil {
		return ErrNilDB
	}
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pessimistic: session lock %d: acquire: %w", key, err)
	}
	defer pc.Release() // after the unlock below: deferred calls run last-in first-out
	conn := pc.Conn()
	locked := true
	if try {
		err = conn.QueryRow(ctx, sqlTrySessionLock, key).Scan(&locked)
	} else {
		_, err = conn.Exec(ctx, sqlSessionLock, key)
	}
	if err != nil {
		cancelOrphan(ctx, conn.PgConn(), err)
		unlockAll(ctx, conn)
		return lockErr(err, fmt.Sprintf("session advisory lock %d", key))
	}
	if !locked {
		return fmt.Errorf("%w: advisory lock %d is held by another session", ErrLockNotAvailable, key)
	}
	defer unlockAll(ctx, conn)
	return fn(ctx, conn)
}

// unlockAll releases the connection's session advisory locks, on a context that is not
// cancelled with ctx, or closes the connection if it cannot. A transaction fn left open (or
// failed) is rolled back first: session locks survive the rollback, and a failed transaction
// would refuse the unlock.
func unlockAll(ctx context.Context, conn *pgx.Conn) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var err error
	if conn.IsClosed() {
		return
	}
	if conn.PgConn().TxStatus() != 'I' {
		_, err = conn.Exec(uctx, sqlRollback)
	}
	if err == nil {
		_, err = conn.Exec(uctx, sqlUnlockAll)
	}
	if err != nil {
		// The session ends with the connection, and its locks with the session (as soon as
		// the server notices).
		_ = conn.Close(uctx)
	}
}
