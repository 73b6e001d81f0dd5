// Package retry is the one retry loop of the toolkit: dedupe, optimistic and pessimistic run
// their attempts through it, with jittered exponential backoff (internal/backoff) between
// them and the context honoured while waiting.
package retry

import (
	"context"
	"time"

	"github.com/pgonce/pgonce/internal/backoff"
)

// Defaults for retrying a transaction that PostgreSQL aborted (serialization failure or
// deadlock): dedupe.Options and pessimistic.RetryOptions use them.
const (
	DefaultMaxAttempts = 5
	DefaultBaseDelay   = 5 * time.Millisecond
	DefaultMaxDelay    = 500 * time.Millisecond
)

// Policy bounds a loop: at most MaxAttempts calls, spaced by backoff.Delay(n, BaseDelay,
// MaxDelay). A non-positive field means the default above.
type Policy struct {
	MaxAttempts         int
	BaseDelay, MaxDelay time.Duration
}

// WithDefaults returns p with its non-positive fields set to def's.
func (p Policy) WithDefaults(def Policy) Policy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = def.MaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = def.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = def.MaxDelay
	}
	return p
}

// Default is the policy of the constants above.
var Default = Policy{MaxAttempts: DefaultMaxAttempts, BaseDelay: DefaultBaseDelay, MaxDelay: DefaultMaxDelay}

// Outcome is how Do ended.
type Outcome int

const (
	// Done: attempt returned nil or an error that retryable refused.
	Done Outcome = iota
	// Exhausted: the last allowed attempt failed with a retryable error.
	Exhausted
	// Cancelled: ctx ended while waiting between attempts.
	Cancelled
)

// Result says how a loop went.
type Result struct {
	Attempts int     // calls of attempt
	Outcome  Outcome // how the loop ended
	CtxErr   error   // ctx's error when Outcome is Cancelled
}

// Do calls attempt (with its 1-based number) until it returns nil or an error retryable
// refuses, at most p.MaxAttempts times, sleeping between attempts, and returns the last
// attempt's error.
func Do(ctx context.Context, p Policy, attempt func(n int) error, retryable func(error) bool) (Result, error) {
	for n := 1; ; n++ {
		err := attempt(n)
		if err == nil || !retryable(err) {
			return Result{Attempts: n, Outcome: Done}, err
		}
		if n >= p.MaxAttempts {
			return Result{Attempts: n, Outcome: Exhausted}, err
		}
		if serr := backoff.Sleep(ctx, backoff.Delay(n, p.BaseDelay, p.MaxDelay)); serr != nil {
			return Result{Attempts: n, Outcome: Cancelled, CtxErr: serr}, err
		}
	}
}
