package optimistic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgonce/pgonce/internal/retry"
)

// RetryOptions bounds Retry. A nil *RetryOptions, or a non-positive field, means the default.
type RetryOptions struct {
	// MaxAttempts bounds the attempts; default 10. Raise it for a row many writers change at
	// once (or lock that row instead: package pessimistic).
	MaxAttempts int
	// BaseDelay and MaxDelay space the attempts with jittered exponential backoff; defaults
	// 1ms and 100ms. The jitter keeps writers who lost together from colliding again together.
	BaseDelay, MaxDelay time.Duration
}

// Retry runs attempt until it returns nil or an error that is not ErrStale, at most
// MaxAttempts times, and reports how many times it called attempt. attempt must read the row
// afresh each time and apply its change to what it read (Get, then Update with the version
// Get returned): rerunning it is what makes the change correct.
//
// Between attempts Retry sleeps backoff.Delay (exponential, half of it random). It stops
// early when ctx is done, returning ctx.Err(). After the last attempt the error wraps both
// ErrExhausted and the last *StaleError. Any other error from attempt comes back as is, at
// once. Cost: each attempt's statements, plus the sleeps; no lock is held between attempts.
func Retry(ctx context.Context, opts *RetryOptions, attempt func(ctx context.Context) error) (attempts int, err error) {
	if attempt == nil {
		return 0, fmt.Errorf("%w: nil attempt function", ErrInvalid)
	}
	// Its own defaults, not retry.Default: a stale version is cheap to detect and comes from
	// contention, so it is retried sooner and more often than an aborted transaction.
	p := retry.Policy{MaxAttempts: 10, BaseDelay: time.Millisecond, MaxDelay: 100 * time.Millisecond}
	if opts != nil {
		p = retry.Policy{MaxAttempts: opts.MaxAttempts, BaseDelay: opts.BaseDelay, MaxDelay: opts.MaxDelay}.WithDefaults(p)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	r, err := retry.Do(ctx, p, func(int) error { return attempt(ctx) }, func(err error) bool { return errors.Is(err, ErrStale) })
	switch r.Outcome {
	case retry.Exhausted:
		return r.Attempts, fmt.Errorf("%w after %d attempts: %w", ErrExhausted, r.Attempts, err)
	case retry.Cancelled:
		return r.Attempts, r.CtxErr
	}
	return r.Attempts, err
}
