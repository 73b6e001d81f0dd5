package dedupe

import (
	"errors"
	"fmt"

	"github.com/pgonce/pgonce/internal/inputerr"
)

// Outcomes a caller branches on. Test with errors.Is; every error from Do after validation is
// a *KeyError wrapping one of these, a database error, or the error the function returned.
var (
	// ErrInProgress means another transaction holds the key and the bounded wait
	// (Options.LockWait) ran out before it finished. Nothing ran. HTTP: 409 with Retry-After.
	ErrInProgress = errors.New("dedupe: key in progress")

	// ErrFingerprintMismatch means the key was already used with a different request
	// fingerprint. Nothing ran. HTTP: 422.
	ErrFingerprintMismatch = errors.New("dedupe: key reused with a different request")

	// ErrResponseTooLarge means the function's response is larger than
	// Options.MaxResponseBytes; its transaction was rolled back, the key stays free.
	ErrResponseTooLarge = errors.New("dedupe: response too large to store")

	// ErrTxEnded means the function committed or rolled back the transaction it was given,
	// or left it failed (a statement error was ignored). The function must leave the
	// transaction to Do.
	ErrTxEnded = errors.New("dedupe: function ended or broke its transaction")

	// ErrUnavailable means a runner in front of the database (the Redis guard with
	// redisguard.FailClosed) refused the request because something it depends on is down.
	// Nothing ran; retry later with the same key. HTTP: 503 with Retry-After.
	ErrUnavailable = errors.New("dedupe: unavailable")

	// ErrIncomplete means a committed key has no stored response. Do commits such a row only
	// when a function ended the transaction itself with a COMMIT sent as SQL (ErrTxEnded), so
	// that its committed writes are not made again; otherwise the row was written by other
	// code.
	ErrIncomplete = errors.New("dedupe: stored key has no response")
)

// ErrInvalid is matched by every input error: bad input is refused before any SQL runs, with
// nothing written. Each pgonce package follows the same rule with its own ErrInvalid; the
// specific sentinels below exist where callers branch on what was wrong (dedupehttp answers
// a bad key and a bad scope differently).
var ErrInvalid = errors.New("dedupe: invalid argument")

// Input errors. Each also matches ErrInvalid; the message says what exactly is wrong.
var (
	ErrInvalidKey         = inputerr.New(ErrInvalid, "dedupe: invalid key")
	ErrInvalidScope       = inputerr.New(ErrInvalid, "dedupe: invalid scope")
	ErrInvalidFingerprint = inputerr.New(ErrInvalid, "dedupe: invalid fingerprint")
	ErrInvalidTTL         = inputerr.New(ErrInvalid, "dedupe: invalid TTL")
	ErrNilFunc            = inputerr.New(ErrInvalid, "dedupe: nil function")
	ErrNilDB              = inputerr.New(ErrInvalid, "dedupe: nil database handle")
)

// KeyError says which request an error belongs to. Do returns one for every failure after its
// input checks; it unwraps to the cause, so errors.Is(err, ErrInProgress) and errors.As on a
// *pgconn.PgError or on the function's own error types work through it.
type KeyError struct {
	Scope    string
	Key      string
	Attempts int // transaction attempts made, including the failed one
	Err      error
}

// Error says what went wrong and for which request.
func (e *KeyError) Error() string {
	return fmt.Sprintf("%v (scope %q, key %q, attempt %d)", e.Err, e.Scope, e.Key, e.Attempts)
}

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *KeyError) Unwrap() error { return e.Err }
