package optimistic

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Querier runs a statement returning one row; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it,
// so Get and Update work on a pool or inside a caller's transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	// ErrStale means the row's version moved since it was read: someone else updated it.
	// Nothing was written. HTTP: 412 Precondition Failed (with If-Match) or 409.
	ErrStale = errors.New("optimistic: stale version")
	// ErrNotFound means no row has the id.
	ErrNotFound = errors.New("optimistic: row not found")
	// ErrInvalid reports a bad table description or arguments; returned before any SQL runs.
	ErrInvalid = errors.New("optimistic: invalid argument")
)

// StaleError is the error Update returns for a stale version; errors.Is(err, ErrStale).
type StaleError struct {
	Table    string
	ID       any
	Expected int64 // the version the caller read
	Current  int64 // the version the row has now
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("optimistic: stale version of %s %v: expected %d, now %d", e.Table, e.ID, e.Expected, e.Current)
}

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// Table describes a versioned table. Names are identifiers, quoted with pgx.Identifier, never
// interpolated as text, so any name is safe (a table called "order", a column with a space).
type Table struct {
	Name    pgx.Identifier // the table, optionally schema-qualified
	ID      string         // the key column; default "id"
	Version string         // the integer version column; default "version"
}

// Set is one column assignment of an Update; Value is always sent as a parameter.
type Set struct {
	Column string
	Value  any
}

func (t Table) cols() (name, id, version string, err error) {
	if len(t.Name) == 0 {
		return "", "", "", fmt.Errorf("%w: table name is empty", ErrInvalid)
	}
	for _, part := range t.Name {
		if part == "" {
			return "", "", "", fmt.Errorf("%w: empty part in table name %v", ErrInvalid, []string(t.Name))
		}
	}
	id, version = t.ID, t.Version
	if id == "" {
		id = "id"
	}
	if version == "" {
		version = "version"
	}
	return t.Name.Sanitize(), pgx.Identifier{id}.Sanitize(), pgx.Identifier{version}.Sanitize(), nil
}

// Get reads the row with id: its version, and the given columns into dest (as pgx scans).
// One statement. ErrNotFound when there is no such row.
func (t Table) Get(ctx context.Context, q Querier, id any, columns []string, dest ...any) (version int64, err error) {
	name, idCol, verCol, err := t.cols()
	if err != nil {
		return 0, err
	}
	if len(columns) != len(dest) {
		return 0, fmt.Errorf("%w: %d columns but %d destinations", ErrInvalid, len(columns), len(dest))
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(verCol)
	for _, c := range columns {
		if c == "" {
			return 0, fmt.Errorf("%w: empty column name", ErrInvalid)
		}
		b.WriteString(", ")
		b.WriteString(pgx.Identifier{c}.Sanitize())
	}
	fmt.Fprintf(&b, " FROM %s WHERE %s = $1", name, idCol)
	err = q.QueryRow(ctx, b.String(), id).Scan(append([]any{&version}, dest...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: %s %v", ErrNotFound, name, id)
	}
	return version, err
}

// Update writes the assignments to the row with id if its version is still expected, and
// increments the version in the same statement:
//
//	UPDATE t SET c1 = $3, ..., version = version + 1 WHERE id = $1 AND version = $2 RETURNING version
//
// It returns the new version. If the version moved it returns a *StaleError (ErrStale) with the
// current version, and if the row is gone ErrNotFound; in both cases nothing was written.
// Cost: one statement; a second one only to tell stale from not found. The statement takes the
// row lock for the rest of the caller's transaction (or only for itself on a pool).
func (t Table) Update(ctx context.Context, q Querier, id any, expected int64, sets ...Set) (newVersion int64, err error) {
	name, idCol, verCol, err := t.cols()
	if err != nil {
		return 0, err
	}
	if len(sets) == 0 {
		return 0, fmt.Errorf("%w: nothing to set", ErrInvalid)
	}
	var b strings.Builder
	args := make([]any, 2, 2+len(sets))
	args[0], args[1] = id, expected
	fmt.Fprintf(&b, "UPDATE %s SET ", name)
	for i, s := range sets {
		if s.Column == "" {
			return 0, fmt.Errorf("%w: empty column name", ErrInvalid)
		}
		if s.Column == t.versionName() {
			return 0, fmt.Errorf("%w: the version column is set by Update", ErrInvalid)
		}
		b.WriteString(pgx.Identifier{s.Column}.Sanitize())
		b.WriteString(" = $")
		b.WriteString(strconv.Itoa(i + 3))
		b.WriteString(", ")
		args = append(args, s.Value)
	}
	fmt.Fprintf(&b, "%[1]s = %[1]s + 1 WHERE %[2]s = $1 AND %[1]s = $2 RETURNING %[1]s", verCol, idCol)
	err = q.QueryRow(ctx, b.String(), args...).Scan(&newVersion)
	if !errors.Is(err, pgx.ErrNoRows) {
		return newVersion, err
	}
	current, err := t.Get(ctx, q, id, nil)
	if err != nil {
		return 0, err
	}
	return 0, &StaleError{Table: name, ID: id, Expected: expected, Current: current}
}

func (t Table) versionName() string {
	if t.Version == "" {
		return "version"
	}
	return t.Version
}
