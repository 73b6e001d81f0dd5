package pessimistic

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/pgerr"
)

var (
	// ErrLockNotAvailable means a lock is held elsewhere and the call did not wait for it,
	// the one "held elsewhere" error of this package: a row lock with NoWait or whose bounded
	// wait ran out (RowLock.Timeout, or the session's lock_timeout: SQLSTATE 55P03), or
	// TryWithSessionLock finding the advisory lock held by another session. After RowLock.Row or RowLock.Query with NoWait or a Timeout
	// the caller's transaction is still usable.
	ErrLockNotAvailable = errors.New("pessimistic: lock not available")
	// ErrNotFound means no row matched RowLock.Row's key; with SkipLocked also that the row is
	// locked by another transaction (SKIP LOCKED cannot tell the two apart).
	ErrNotFound = errors.New("pessimistic: no row to lock")
	// ErrInvalid reports bad identifiers, modes or arguments; returned before any SQL runs.
	ErrInvalid = errors.New("pessimistic: invalid argument")
)

// Mode says what a row lock does when the row is already locked.
type Mode int

const (
	Wait       Mode = iota // wait for the lock (bounded by RowLock.Timeout, or by ctx)
	NoWait                 // fail at once with ErrLockNotAvailable (FOR UPDATE NOWAIT)
	SkipLocked             // leave locked rows out of the result (FOR UPDATE SKIP LOCKED)
)

// Strength is the row-lock strength (PostgreSQL's row-level lock modes).
type Strength int

const (
	ForUpdate      Strength = iota // FOR UPDATE: you will update or delete the row
	ForNoKeyUpdate                 // FOR NO KEY UPDATE: you will update non-key columns (lets foreign-key checks through)
	ForShare                       // FOR SHARE: keep the row from changing while you read it
	ForKeyShare                    // FOR KEY SHARE: keep the row's key from changing
)

// RowLock describes a row lock. The zero value is FOR UPDATE, waiting as long as ctx allows.
type RowLock struct {
	Mode     Mode
	Strength Strength
	// Timeout bounds the wait in Wait mode: SET LOCAL lock_timeout for the locking statement
	// only, then the previous setting again (millisecond resolution). Zero waits as long as
	// ctx allows; NoWait and SkipLocked never wait and ignore it.
	Timeout time.Duration
	// Of restricts the lock to these tables of the statement's FROM clause (table names or
	// aliases): FOR UPDATE OF a, b. Empty locks the rows of every table the statement reads.
	Of []string
	// Tracer, when set, is told when each Row, RowWhere or Query begins and ends (component
	// dedupe.ComponentPessimistic, operation dedupe.OperationRowLock; outcome obtained,
	// not_obtained for ErrLockNotAvailable, invalid or error; the whole call counts as Wait).
	// The key reported is the locked table and condition ("products" WHERE "sku" = mug), or
	// "query" for Query, hashed unless TraceKeys is set.
	Tracer dedupe.Tracer
	// TraceKeys puts the key itself in traces, not only its hash.
	TraceKeys bool
}

// Eq is one condition column = value of RowLock.RowWhere; the value is always a parameter.
type Eq struct {
	Column string
	Value  any
}

// clause returns the locking clause, starting on a new line so that a trailing "-- comment"
// in the caller's SQL cannot swallow it.
func (l RowLock) clause() (string, error) {
	var b strings.Builder
	switch l.Strength {
	case ForUpdate:
		b.WriteString("\nFOR UPDATE")
	case ForNoKeyUpdate:
		b.WriteString("\nFOR NO KEY UPDATE")
	case ForShare:
		b.WriteString("\nFOR SHARE")
	case ForKeyShare:
		b.WriteString("\nFOR KEY SHARE")
	default:
		return "", fmt.Errorf("%w: unknown lock strength %d", ErrInvalid, l.Strength)
	}
	for i, t := range l.Of {
		if t == "" {
			return "", fmt.Errorf("%w: empty table name in RowLock.Of", ErrInvalid)
		}
		if i == 0 {
			b.WriteString(" OF ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{t}.Sanitize())
	}
	switch l.Mode {
	case Wait:
	case NoWait:
		b.WriteString(" NOWAIT")
	case SkipLocked:
		b.WriteString(" SKIP LOCKED")
	default:
		return "", fmt.Errorf("%w: unknown lock mode %d", ErrInvalid, l.Mode)
	}
	if l.Timeout < 0 {
		return "", fmt.Errorf("%w: negative lock timeout %v", ErrInvalid, l.Timeout)
	}
	return b.String(), nil
}

const (
	sqlSavepoint        = "/* pgonce:savepoint */ SAVEPOINT pgonce_lock"
	sqlReleaseSavepoint = "/* pgonce:release_savepoint */ RELEASE SAVEPOINT pgonce_lock"
	// Sent as one simple-protocol query: PostgreSQL refuses to parse RELEASE in an aborted
	// transaction, which a batch (prepared first on a fresh connection) would need.
	sqlUndoSavepoint = "/* pgonce:undo_savepoint */ ROLLBACK TO SAVEPOINT pgonce_lock; RELEASE SAVEPOINT pgonce_lock"
	// set_config(..., true) is SET LOCAL with the value as a parameter.
	sqlSetLockTimeout = "/* pgonce:set_lock_timeout */ SELECT set_config('pgonce.saved_lock_timeout', current_setting('lock_timeout'), true), set_config('lock_timeout', $1, true)"
	sqlRestoreTimeout = "/* pgonce:restore_lock_timeout */ SELECT set_config('lock_timeout', current_setting('pgonce.saved_lock_timeout'), true)"
)

// Row locks the row of table whose keyColumn equals key, inside tx, and scans columns into
// dest (none: just lock). It is RowWhere with one condition:
//
//	SELECT c1, ... FROM table WHERE keyColumn = $1 FOR UPDATE [NOWAIT | SKIP LOCKED]
//
// The lock is held until tx ends. Identifiers are quoted, the key is a parameter. Errors:
// ErrNotFound, ErrLockNotAvailable and ErrDeadlock (both wrapping the *pgconn.PgError),
// ErrInvalid. Cost: one statement in plain Wait mode; with NoWait or a Timeout the same
// round trip also carries a savepoint (and the lock_timeout change), see Query.
func (l RowLock) Row(ctx context.Context, tx pgx.Tx, table pgx.Identifier, keyColumn string, key any, columns []string, dest ...any) error {
	return l.RowWhere(ctx, tx, table, []Eq{{Column: keyColumn, Value: key}}, columns, dest...)
}

// RowWhere is Row for a key of several columns (a composite primary key such as
// (tenant_id, id)): it locks the rows of table matching every condition and scans the first
// into dest. The conditions should name a unique key; if several rows match, all are locked.
//
//	SELECT c1, ... FROM table WHERE k1 = $1 AND k2 = $2 FOR UPDATE [NOWAIT | SKIP LOCKED]
func (l RowLock) RowWhere(ctx context.Context, tx pgx.Tx, table pgx.Identifier, where []Eq, columns []string, dest ...any) (err error) {
	if l.Tracer != nil {
		var t *lockTrace
		ctx, t = traceStart(ctx, l.Tracer, dedupe.OperationRowLock, "", describe(table, where), l.TraceKeys)
		defer func() { t.endLock(ctx, err) }()
	}
	if len(columns) != len(dest) {
		return fmt.Errorf("%w: %d columns but %d destinations", ErrInvalid, len(columns), len(dest))
	}
	if len(where) == 0 {
		return fmt.Errorf("%w: no key condition", ErrInvalid)
	}
	if err := checkIdent("table name", table...); err != nil {
		return err
	}
	if err := checkIdent("column name", columns...); err != nil {
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
	b.WriteString(" FROM ")
	b.WriteString(table.Sanitize())
	args := make([]any, len(where))
	for i, e := range where {
		if err := checkIdent("key column", e.Column); err != nil {
			return err
		}
		if i == 0 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		b.WriteString(pgx.Identifier{e.Column}.Sanitize() + " = $" + strconv.Itoa(i+1))
		args[i] = e.Value
	}
	what := describe(table, where) // for error messages: "products" WHERE "sku" = mug
	found := false
	err = l.query(ctx, tx, b.String(), args, what, func(rows pgx.Rows) error {
		if found || len(dest) == 0 {
			found = true
			return nil
		}
		found = true
		return rows.Scan(dest...)
	})
	if err == nil && !found {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return err
}

// Query runs the caller's SELECT with the lock's clause appended (so the SQL must not end in
// its own FOR UPDATE or a semicolon), inside tx, and calls each for every row it returns.
// args are the SQL's parameters. For a queue, lock and take a batch nobody else holds:
//
//	pessimistic.RowLock{Mode: pessimistic.SkipLocked}.Query(ctx, tx,
//		`SELECT id FROM jobs WHERE state = 'ready' ORDER BY id LIMIT 10`, nil, func(r pgx.Rows) error { ... })
//
// each runs while the result is being read: it must not use tx (the connection is busy).
// The locks are held until tx ends. Errors from each come back as they are.
//
// In plain Wait mode Query is one statement, and a failure aborts tx as any failed statement
// does. With NoWait or a Timeout, the statement runs inside a savepoint sent in the same
// round trip (SAVEPOINT, [set lock_timeout], the SELECT, [restore lock_timeout], RELEASE),
// so a lock that is not available costs one more round trip to undo the savepoint and
// leaves tx usable, with no row of this statement locked.
func (l RowLock) Query(ctx context.Context, tx pgx.Tx, sql string, args []any, each func(pgx.Rows) error) (err error) {
	if l.Tracer != nil {
		var t *lockTrace
		ctx, t = traceStart(ctx, l.Tracer, dedupe.OperationRowLock, "", "query", l.TraceKeys)
		defer func() { t.endLock(ctx, err) }()
	}
	return l.query(ctx, tx, sql, args, "query", each)
}

// describe names what RowWhere locks, for traces: "products" WHERE "sku" = mug.
func describe(table pgx.Identifier, where []Eq) string {
	var b strings.Builder
	b.WriteString(table.Sanitize())
	for i, e := range where {
		if i == 0 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		fmt.Fprintf(&b, "%s = %v", pgx.Identifier{e.Column}.Sanitize(), e.Value)
	}
	return b.String()
}

func (l RowLock) query(ctx context.Context, tx pgx.Tx, sql string, args []any, what string, each func(pgx.Rows) error) error {
	if tx == nil || each == nil {
		return fmt.Errorf("%w: nil transaction or function", ErrInvalid)
	}
	if strings.TrimSpace(sql) == "" {
		return fmt.Errorf("%w: empty SQL", ErrInvalid)
	}
	clause, err := l.clause()
	if err != nil {
		return err
	}
	// The tag goes first, before the caller's SQL, so pg_stat_statements shows it.
	sql = "/* pgonce:rowlock */ " + sql + clause
	if l.Mode == Wait && l.Timeout > 0 {
		what += " (waited up to " + l.Timeout.String() + ")"
	}
	scan := func(rows pgx.Rows) error {
		for rows.Next() {
			if err := each(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	bounded := l.Mode == Wait && l.Timeout > 0
	if l.Mode != NoWait && !bounded {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			cancelOrphan(ctx, tx.Conn().PgConn(), err)
			return lockErr(err, what)
		}
		err = scan(rows)
		rows.Close()
		cancelOrphan(ctx, tx.Conn().PgConn(), err)
		return lockErr(err, what)
	}
	b := &pgx.Batch{}
	b.Queue(sqlSavepoint)
	if bounded {
		b.Queue(sqlSetLockTimeout, strconv.FormatInt(max(l.Timeout.Milliseconds(), 1), 10)+"ms")
	}
	b.Queue(sql, args...).Query(scan)
	if bounded {
		b.Queue(sqlRestoreTimeout)
	}
	b.Queue(sqlReleaseSavepoint)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		cancelOrphan(ctx, tx.Conn().PgConn(), err)
		// A failed statement left the transaction aborted: undo to the savepoint so it is
		// usable again, which also restores lock_timeout and drops this statement's locks.
		// Otherwise (each failed) the server ran the whole batch, savepoint release included,
		// and the transaction is fine as it is.
		if tx.Conn().PgConn().TxStatus() == 'E' {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			_, _ = tx.Exec(cctx, sqlUndoSavepoint)
		}
		return lockErr(err, what)
	}
	return nil
}

// lockErr maps the lock-related SQLSTATEs to the package's errors, naming what was being
// locked and keeping the cause (errors.As finds the *pgconn.PgError).
func lockErr(err error, what string) error {
	switch pgerr.Code(err) {
	case pgerr.LockNotAvailable:
		return fmt.Errorf("%w: %s: %w", ErrLockNotAvailable, what, err)
	case pgerr.DeadlockDetected:
		return fmt.Errorf("%w: %s: %w", ErrDeadlock, what, err)
	}
	return err
}

func checkIdent(what string, parts ...string) error {
	if what == "table name" && len(parts) == 0 {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	for _, p := range parts {
		if p == "" {
			return fmt.Errorf("%w: empty %s", ErrInvalid, what)
		}
	}
	return nil
}
