package optimistic

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgonce/pgonce/internal/inputerr"
)

// Querier runs a statement returning one row; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it,
// so Get and Update work on a pool or inside a caller's transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Table describes a versioned table: a key column and an integer version column (bigint
// recommended) that every update increments, such as
//
//	CREATE TABLE products (
//	    sku        text        PRIMARY KEY,
//	    stock      integer     NOT NULL CHECK (stock >= 0),
//	    version    bigint      NOT NULL DEFAULT 1,
//	    updated_at timestamptz NOT NULL DEFAULT now()
//	);
//
// (examples/orders/migrations/0001_products.up.sql). Names are identifiers, quoted with
// pgx.Identifier and never interpolated as text, so any name is safe: a table called
// "order", a column with a space in it. The zero value of each column name is its default.
type Table struct {
	Name    pgx.Identifier // the table, optionally schema-qualified; required
	ID      string         // the key column; default "id"
	Version string         // the integer version column; default "version"
	// UpdatedAt, when set, names a timestamp column that Update sets to now() (the
	// transaction's start time) in the same statement.
	UpdatedAt string
}

// Set is one column assignment of an Update; Value is always sent as a parameter. In pgx's
// exec and simple_protocol query modes (used behind PgBouncer) the server does not describe
// the parameter, so Value must be a Go type pgx encodes on its own (string, integers, bool,
// []byte for bytea); encode a map for jsonb, say, to a JSON string first.
type Set struct {
	Column string
	Value  any
}

// names checks the description and returns the quoted table, key and version names.
func (t Table) names() (table, id, version string, err error) {
	if len(t.Name) == 0 {
		return "", "", "", fmt.Errorf("%w: table name is empty", ErrInvalid)
	}
	for _, part := range t.Name {
		if part == "" {
			return "", "", "", fmt.Errorf("%w: empty part in table name %q", ErrInvalid, []string(t.Name))
		}
	}
	return t.Name.Sanitize(), pgx.Identifier{t.idName()}.Sanitize(), pgx.Identifier{t.versionName()}.Sanitize(), nil
}

func (t Table) idName() string {
	if t.ID == "" {
		return "id"
	}
	return t.ID
}

func (t Table) versionName() string {
	if t.Version == "" {
		return "version"
	}
	return t.Version
}

func checkQuerier(q Querier) error {
	if inputerr.IsNil(q) {
		return ErrNilDB
	}
	return nil
}

// Get reads the row with id: its version, and the given columns into dest (scanned as pgx
// scans). It takes no lock. One statement:
//
//	SELECT version, c1, ... FROM t WHERE id = $1
//
// ErrNotFound when there is no such row.
func (t Table) Get(ctx context.Context, q Querier, id any, columns []string, dest ...any) (version int64, err error) {
	table, idCol, verCol, err := t.names()
	if err != nil {
		return 0, err
	}
	if err := checkQuerier(q); err != nil {
		return 0, err
	}
	if len(columns) != len(dest) {
		return 0, fmt.Errorf("%w: %d columns but %d destinations", ErrInvalid, len(columns), len(dest))
	}
	var b strings.Builder
	b.WriteString("/* pgonce:optimistic_get */ SELECT ")
	b.WriteString(verCol)
	for _, c := range columns {
		if c == "" {
			return 0, fmt.Errorf("%w: empty column name", ErrInvalid)
		}
		b.WriteString(", ")
		b.WriteString(pgx.Identifier{c}.Sanitize())
	}
	fmt.Fprintf(&b, " FROM %s WHERE %s = $1", table, idCol)
	err = q.QueryRow(ctx, b.String(), id).Scan(append([]any{&version}, dest...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: %s %v", ErrNotFound, table, id)
	}
	return version, err
}

// Update writes the assignments to the row with id if its version is still expected, and
// increments the version in the same statement:
//
//	UPDATE t SET c1 = $3, ..., [updated_at = now(),] version = version + 1
//	WHERE id = $1 AND version = $2 RETURNING version
//
// It returns the new version (send it back as the next ETag). If the row exists but its
// version moved, it returns a *StaleError (errors.Is ErrStale) carrying the current version;
// if there is no row, an error wrapping ErrNotFound; in both cases nothing was written.
//
// Cost: one statement when it succeeds; a second one (a SELECT of the version) only to tell a
// stale version from a missing row. The UPDATE takes the row lock for the rest of the
// caller's transaction (on a pool: for that statement only). Under READ COMMITTED, the
// default, a concurrent change shows up as ErrStale; under REPEATABLE READ or SERIALIZABLE
// PostgreSQL reports it as a serialization failure (40001) instead, which aborts the
// transaction: rerun it whole (pessimistic.RetryTx).
func (t Table) Update(ctx context.Context, q Querier, id any, expected int64, sets ...Set) (newVersion int64, err error) {
	table, idCol, verCol, err := t.names()
	if err != nil {
		return 0, err
	}
	if err := checkQuerier(q); err != nil {
		return 0, err
	}
	if len(sets) == 0 {
		return 0, fmt.Errorf("%w: nothing to set", ErrInvalid)
	}
	var b strings.Builder
	args := make([]any, 2, 2+len(sets))
	args[0], args[1] = id, expected
	fmt.Fprintf(&b, "/* pgonce:optimistic_update */ UPDATE %s SET ", table)
	for i, s := range sets {
		switch s.Column {
		case "":
			return 0, fmt.Errorf("%w: empty column name", ErrInvalid)
		case t.versionName():
			return 0, fmt.Errorf("%w: the version column is set by Update", ErrInvalid)
		case t.UpdatedAt:
			return 0, fmt.Errorf("%w: the UpdatedAt column is set by Update", ErrInvalid)
		}
		b.WriteString(pgx.Identifier{s.Column}.Sanitize())
		b.WriteString(" = $")
		b.WriteString(strconv.Itoa(i + 3))
		b.WriteString(", ")
		args = append(args, s.Value)
	}
	if t.UpdatedAt != "" {
		b.WriteString(pgx.Identifier{t.UpdatedAt}.Sanitize())
		b.WriteString(" = now(), ")
	}
	fmt.Fprintf(&b, "%[1]s = %[1]s + 1 WHERE %[2]s = $1 AND %[1]s = $2 RETURNING %[1]s", verCol, idCol)
	err = q.QueryRow(ctx, b.String(), args...).Scan(&newVersion)
	if !errors.Is(err, pgx.ErrNoRows) {
		return newVersion, err
	}
	// No row matched: either it moved on or it is gone. Look again to say which.
	current, err := t.Get(ctx, q, id, nil)
	if err != nil {
		return 0, err
	}
	return 0, &StaleError{Table: table, ID: id, Expected: expected, Current: current}
}
