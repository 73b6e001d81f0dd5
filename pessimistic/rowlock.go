package pessimistic

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/internal/pgerr"
)

var (
	// ErrLockNotAvailable means the row is locked by another transaction and the lock mode did
	// not wait for it (NoWait) or the bounded wait ran out (Lock.Timeout): SQLSTATE 55P03.
	// The caller's transaction is still usable (Lock works inside a savepoint).
	ErrLockNotAvailable = errors.New("pessimistic: lock not available")
	// ErrNotFound means no row matched; with SkipLocked also that the row is locked by another
	// transaction (SKIP LOCKED cannot tell the two apart).
	ErrNotFound = errors.New("pessimistic: no row to lock")
	// ErrInvalid reports bad identifiers or arguments; returned before any SQL runs.
	ErrInvalid = errors.New("pessimistic: invalid argument")
)

// Mode says what a row lock does when the row is already locked.
type Mode int

const (
	Wait       Mode = iota // wait for the lock (bounded by Lock.Timeout, or by ctx)
	NoWait                 // fail at once with ErrLockNotAvailable (FOR UPDATE NOWAIT)
	SkipLocked             // leave locked rows out of the result (FOR UPDATE SKIP LOCKED)
)

// Strength is the row-lock strength.
type Strength int

const (
	ForUpdate      Strength = iota // FOR UPDATE: you will update or delete the row
	ForNoKeyUpdate                 // FOR NO KEY UPDATE: you will update non-key columns (lets FK checks through)
	ForShare                       // FOR SHARE: keep the row from changing while you read
)

// Lock describes a row lock. The zero value is FOR UPDATE, waiting as long as ctx allows.
type Lock struct {
	Mode     Mode
	Strength Strength
	// Timeout bounds the wait in Wait mode (SET LOCAL lock_timeout around the statement only;
	// millisecond resolution). Zero waits as long as ctx allows.
	Timeout time.Duration
}

// Clause returns the locking clause for the lock, such as " FOR UPDATE SKIP LOCKED".
func (l Lock) Clause() string {
	s := [...]string{" FOR UPDATE", " FOR NO KEY UPDATE", " FOR SHARE"}[l.Strength%3]
	switch l.Mode {
	case NoWait:
		s += " NOWAIT"
	case SkipLocked:
		s += " SKIP LOCKED"
	}
	return s
}

const (
	sqlSavepoint        = "SAVEPOINT pgonce_lock"
	sqlReleaseSavepoint = "RELEASE SAVEPOINT pgonce_lock"
	// Sent as one simple-protocol query: PostgreSQL refuses to parse RELEASE in an aborted
	// transaction, which a batch (prepared first on a fresh connection) would need.
	sqlUndoSavepoint  = "ROLLBACK TO SAVEPOINT pgonce_lock; RELEASE SAVEPOINT pgonce_lock"
	sqlSetLockTimeout = "SELECT set_config('pgonce.saved_lock_timeout', current_setting('lock_timeout'), true), set_config('lock_timeout', $1, true)"
	sqlRestoreTimeout = "SELECT set_config('lock_timeout', current_setting('pgonce.saved_lock_timeout'), true)"
)

// Row locks the row of table whose keyColumn equals key, inside tx, and scans columns into
// dest:
//
//	SELECT columns FROM table WHERE keyColumn = $1 FOR UPDATE [NOWAIT | SKIP LOCKED]
//
// The lock is held until tx ends. Identifiers are quoted, the key is a parameter. Errors:
// ErrNotFound, ErrLockNotAvailable (wrapping the PostgreSQL error), ErrDeadlock.
func (l Lock) Row(ctx context.Context, tx pgx.Tx, table pgx.Identifier, keyColumn string, key any, columns []string, dest ...any) error {
	if len(columns) != len(dest) {
		return fmt.Errorf("%w: %d columns but %d destinations", ErrInvalid, len(columns), len(dest))
	}
	if err := checkIdent(table...); err != nil {
		return err
	}
	if err := checkIdent(append([]string{keyColumn}, columns...)...); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	if len(columns) == 0 {
		b.WriteString("1")
	}
	for i, c := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{c}.Sanitize())
	}
	fmt.Fprintf(&b, " FROM %s WHERE %s = $1", table.Sanitize(), pgx.Identifier{keyColumn}.Sanitize())
	found := false
	err := l.Query(ctx, tx, b.String(), []any{key}, func(rows pgx.Rows) error {
		found = true
		if len(dest) == 0 {
			return nil
		}
		return rows.Scan(dest...)
	})
	if err == nil && !found {
		return fmt.Errorf("%w: %s %s = %v", ErrNotFound, table.Sanitize(), keyColumn, key)
	}
	return err
}

// Query runs the caller's SELECT with the lock's clause appended (the SQL must not carry its
// own FOR UPDATE), inside tx, and calls each for every row. Use it for queues:
//
//	pessimistic.Lock{Mode: pessimistic.SkipLocked}.Query(ctx, tx,
//		`SELECT id FROM jobs WHERE state = 'ready' ORDER BY id LIMIT 10`, nil, func(r pgx.Rows) error { ... })
//
// In NoWait mode and with a Timeout, the statement runs inside a savepoint pipelined with it,
// so a lock that is not available leaves tx usable; in plain Wait mode it costs nothing extra.
func (l Lock) Query(ctx context.Context, tx pgx.Tx, sql string, args []any, each func(pgx.Rows) error) error {
	if tx == nil || each == nil {
		return fmt.Errorf("%w: nil transaction or function", ErrInvalid)
	}
	sql += l.Clause()
	guarded := l.Mode == NoWait || l.Timeout > 0
	scan := func(rows pgx.Rows) error {
		for rows.Next() {
			if err := each(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	if !guarded {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return lockErr(err)
		}
		defer rows.Close()
		return lockErr(scan(rows))
	}
	b := &pgx.Batch{}
	b.Queue(sqlSavepoint)
	if l.Timeout > 0 && l.Mode == Wait {
		b.Queue(sqlSetLockTimeout, strconv.FormatInt(max(l.Timeout.Milliseconds(), 1), 10)+"ms")
	}
	b.Queue(sql, args...).Query(scan)
	if l.Timeout > 0 && l.Mode == Wait {
		b.Queue(sqlRestoreTimeout)
	}
	b.Queue(sqlReleaseSavepoint)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		// Undo to the savepoint so the caller's transaction is usable again.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = tx.Exec(cctx, sqlUndoSavepoint)
		return lockErr(err)
	}
	return nil
}

// lockErr maps the lock-related SQLSTATEs to the package's errors, keeping the cause.
func lockErr(err error) error {
	switch pgerr.Code(err) {
	case pgerr.LockNotAvailable:
		return fmt.Errorf("%w: %w", ErrLockNotAvailable, err)
	case pgerr.DeadlockDetected:
		return fmt.Errorf("%w: %w", ErrDeadlock, err)
	}
	return err
}

func checkIdent(parts ...string) error {
	if len(parts) == 0 {
		return fmt.Errorf("%w: empty identifier", ErrInvalid)
	}
	for _, p := range parts {
		if p == "" {
			return fmt.Errorf("%w: empty identifier", ErrInvalid)
		}
	}
	return nil
}
