// Package inputerr builds the specific input-error sentinels of pgonce's packages (a nil
// handle, an invalid key) so that each also matches its package's general ErrInvalid:
// errors.Is(err, dedupe.ErrNilDB) and errors.Is(err, dedupe.ErrInvalid) both hold, while the
// sentinel's message stays its own.
package inputerr

import "reflect"

// New returns a sentinel with message msg that errors.Is also matches to parent.
func New(parent error, msg string) error { return &sentinel{msg: msg, parent: parent} }

type sentinel struct {
	msg    string
	parent error
}

func (e *sentinel) Error() string { return e.msg }

// Is reports the parent (the package's ErrInvalid); identity with the sentinel itself is
// checked by errors.Is before Is is called.
func (e *sentinel) Is(target error) bool { return target == e.parent }

// IsNil reports whether a database handle argument is missing: nil, or a nil pointer in a
// non-nil interface (a *pgxpool.Pool variable never assigned), which a plain == nil misses.
func IsNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}
