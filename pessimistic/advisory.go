package pessimistic

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Key turns a lock name into the 64-bit key of PostgreSQL's advisory lock functions: the first
// eight bytes of the SHA-256 of the name's UTF-8 bytes, read as a big-endian two's-complement
// int64. The mapping is stable across versions and languages; in SQL it is
//
//	('x' || left(encode(sha256(convert_to(name, 'UTF8')), 'hex'), 16))::bit(64)::bigint
//
// Distinct names collide with probability about n²/2⁶⁵; use the two-int form (XactLock2) when
// you already have small integer ids.
func Key(name string) int64 {
	sum := sha256.Sum256([]byte(name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// Querier runs a statement returning one row; pgx.Tx, *pgx.Conn and *pgxpool.Conn satisfy it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// XactLock takes the transaction-scoped advisory lock key in tx (pg_advisory_xact_lock),
// waiting for it as long as ctx allows. PostgreSQL releases it when tx ends; there is no
// unlock. One statement.
func XactLock(ctx context.Context, tx pgx.Tx, key int64) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key)
	return lockErr(err)
}

// TryXactLock takes the transaction-scoped advisory lock key in tx if it is free
// (pg_try_advisory_xact_lock) and reports whether it did. Never waits. One statement.
func TryXactLock(ctx context.Context, tx pgx.Tx, key int64) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, key).Scan(&ok)
	return ok, err
}

// XactLock2 is XactLock for the two-int form (namespace, key), a key space separate from the
// one-int form's.
func XactLock2(ctx context.Context, tx pgx.Tx, namespace, key int32) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, namespace, key)
	return lockErr(err)
}

// TryXactLock2 is TryXactLock for the two-int form.
func TryXactLock2(ctx context.Context, tx pgx.Tx, namespace, key int32) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, $2)`, namespace, key).Scan(&ok)
	return ok, err
}

// ErrNotLocked means TryWithSessionLock found the lock held by another session.
var ErrNotLocked = errors.New("pessimistic: advisory lock held elsewhere")

// WithSessionLock takes the session-scoped advisory lock key on one connection from pool,
// runs fn, and unlocks on that same connection before returning it to the pool: releasing on
// the wrong pooled connection, or forgetting to release, is impossible by construction. The
// lock is held across transactions for as long as fn runs; fn receives the connection holding
// it and may use it (or the pool). The unlock happens even when fn panics or ctx is cancelled;
// if it cannot be sent, the connection is closed, which releases the lock on the server.
// Waiting for the lock is bounded by ctx.
func WithSessionLock(ctx context.Context, pool *pgxpool.Pool, key int64, fn func(ctx context.Context, conn *pgxpool.Conn) error) error {
	return withSessionLock(ctx, pool, key, false, fn)
}

// TryWithSessionLock is WithSessionLock that does not wait: when another session holds the
// lock it returns ErrNotLocked and fn does not run.
func TryWithSessionLock(ctx context.Context, pool *pgxpool.Pool, key int64, fn func(ctx context.Context, conn *pgxpool.Conn) error) error {
	return withSessionLock(ctx, pool, key, true, fn)
}

func withSessionLock(ctx context.Context, pool *pgxpool.Pool, key int64, try bool, fn func(context.Context, *pgxpool.Conn) error) (err error) {
	if fn == nil {
		return ErrNilFunc
	}
	if pool == nil {
		return ErrNilDB
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pessimistic: acquire: %w", err)
	}
	defer conn.Release()
	if try {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return ErrNotLocked
		}
	} else if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return lockErr(err)
	}
	defer func() {
		// Unlock on the same connection, even if ctx is done or fn panicked.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var released bool
		if uerr := conn.QueryRow(uctx, `SELECT pg_advisory_unlock($1)`, key).Scan(&released); uerr != nil || !released {
			// The session ends with the connection, and the lock with the session.
			_ = conn.Conn().Close(uctx)
		}
	}()
	return fn(ctx, conn)
}
