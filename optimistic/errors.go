package optimistic

import (
	"errors"
	"fmt"

	"github.com/pgonce/pgonce/internal/inputerr"
)

var (
	// ErrStale means the row's version moved since it was read: someone else updated it.
	// Nothing was written. Update returns it as a *StaleError; HTTPStatus maps it to 412.
	ErrStale = errors.New("optimistic: stale version")
	// ErrNotFound means no row has the id. It is never ErrStale.
	ErrNotFound = errors.New("optimistic: row not found")
	// ErrInvalid reports a bad table description or argument (an empty identifier, a nil
	// handle or function); returned before any SQL runs.
	ErrInvalid = errors.New("optimistic: invalid argument")

	// ErrNilDB means the Querier was nil; it also matches ErrInvalid.
	ErrNilDB = inputerr.New(ErrInvalid, "optimistic: nil database handle")
	// ErrExhausted wraps the last stale error when Retry runs out of attempts; the error
	// Retry returns then matches both ErrExhausted and ErrStale.
	ErrExhausted = errors.New("optimistic: gave up retrying")
)

// StaleError is the error Update returns when the row exists but its version is no longer
// the expected one; errors.Is(err, ErrStale) is true for it.
type StaleError struct {
	Table    string // the table, quoted as in the SQL
	ID       any    // the row's key
	Expected int64  // the version the caller read
	Current  int64  // the version the row had when Update looked again
}

// Error says which row was stale and which versions met.
func (e *StaleError) Error() string {
	return fmt.Sprintf("optimistic: stale version of %s %v: expected %d, now %d", e.Table, e.ID, e.Expected, e.Current)
}

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleError) Is(target error) bool { return target == ErrStale }
