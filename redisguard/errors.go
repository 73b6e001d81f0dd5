package redisguard

import (
	"errors"
	"fmt"

	"github.com/pgonce/pgonce/dedupe"
)

// Outcomes a caller branches on; test with errors.Is. A duplicate turned away because its key
// is marked in Redis is dedupe.ErrInProgress, the one sentinel for "in progress" whoever
// noticed it (see Guard.Do).
var (
	// ErrUnavailable means Redis failed or did not answer within the guard's Timeout. Guard.Do
	// returns it only with FailClosed; with FailOpen (the default) it goes to OnError and the
	// request runs on PostgreSQL alone.
	// It wraps dedupe.ErrUnavailable, which the HTTP middleware answers with 503.
	ErrUnavailable error = unavailableError{}

	// ErrTokenUnknown means the token was never issued for the scope, or has expired.
	ErrTokenUnknown = errors.New("redisguard: token unknown or expired")

	// ErrTokenUsed means the token was issued and has already been consumed.
	ErrTokenUsed = errors.New("redisguard: token already used")

	// ErrNotObtained means Obtain gave up: the lock is held by another owner (or, in quorum
	// mode, no majority could be locked in time) and the retry strategy or the context ended
	// the attempts. When nodes failed, their errors are wrapped too.
	ErrNotObtained = errors.New("redisguard: lock not obtained")

	// ErrNotHeld means Refresh or Release found the lock no longer held by this owner (it
	// expired, possibly with someone else now holding it), or could not confirm it on a
	// majority of nodes. Nothing belonging to another owner was changed.
	ErrNotHeld = errors.New("redisguard: lock not held")

	// ErrLockLost is the cause (context.Cause) of a watchdog context cancelled because the
	// lock could not be refreshed in time.
	ErrLockLost = errors.New("redisguard: lock lost")

	// ErrInvalid reports a bad argument (empty key or scope, non-positive TTL, ...); returned
	// before any round trip.
	ErrInvalid = errors.New("redisguard: invalid argument")
)

// TokenError says which scope a failed Consume or Issue was for. It unwraps to ErrTokenUnknown,
// ErrTokenUsed, ErrInvalid or a Redis error. The token itself is not included: it is a secret.
type TokenError struct {
	Scope string
	Err   error
}

// Error says what went wrong and for which scope.
func (e *TokenError) Error() string { return fmt.Sprintf("%v (token scope %q)", e.Err, e.Scope) }

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *TokenError) Unwrap() error { return e.Err }

// LockError says which lock an error belongs to. It unwraps to ErrNotObtained, ErrNotHeld,
// ErrInvalid, a context error or Redis errors.
type LockError struct {
	Name string // the lock's name, as given to Obtain
	Err  error
}

// Error says what went wrong and for which lock.
func (e *LockError) Error() string { return fmt.Sprintf("%v (lock %q)", e.Err, e.Name) }

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *LockError) Unwrap() error { return e.Err }

// unavailableError is ErrUnavailable: a Redis failure that also matches the outcome
// dedupe.ErrUnavailable in errors.Is.
type unavailableError struct{}

func (unavailableError) Error() string        { return "redisguard: redis unavailable" }
func (unavailableError) Is(target error) bool { return target == dedupe.ErrUnavailable }
