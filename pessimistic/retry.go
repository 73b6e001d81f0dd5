package pessimistic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/internal/backoff"
	"github.com/pgonce/pgonce/internal/pgerr"
)

// ErrDeadlock means PostgreSQL detected a deadlock (40P01) and aborted this transaction to
// break it. Rerunning the whole transaction is the cure: see RetryTx.
var ErrDeadlock = errors.New("pessimistic: deadlock detected")

// RetryOptions bounds RetryTx. A nil *RetryOptions means the defaults.
type RetryOptions struct {
	MaxAttempts         int           // default 5
	BaseDelay, MaxDelay time.Duration // jittered backoff between attempts; defaults 5ms, 500ms
	TxOptions           pgx.TxOptions // isolation level etc.
}

// RetryTx runs fn in a new transaction on db and commits it, rerunning the whole transaction
// when PostgreSQL aborts it with a deadlock (40P01) or a serialization failure (40001), up to
// MaxAttempts, with jittered backoff, bounded by ctx. It reports the attempts made. fn may run
// several times, each time in a fresh transaction whose earlier attempts were rolled back.
// A deadlock on the last attempt comes back wrapping ErrDeadlock.
func RetryTx(ctx context.Context, db interface {
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}, opts *RetryOptions, fn func(ctx context.Context, tx pgx.Tx) error) (attempts int, err error) {
	if fn == nil {
		return 0, ErrNilFunc
	}
	if isNil(db) {
		return 0, ErrNilDB
	}
	o := RetryOptions{MaxAttempts: 5, BaseDelay: 5 * time.Millisecond, MaxDelay: 500 * time.Millisecond}
	if opts != nil {
		if opts.MaxAttempts > 0 {
			o.MaxAttempts = opts.MaxAttempts
		}
		if opts.BaseDelay > 0 {
			o.BaseDelay = opts.BaseDelay
		}
		if opts.MaxDelay > 0 {
			o.MaxDelay = opts.MaxDelay
		}
		o.TxOptions = opts.TxOptions
	}
	for attempts = 1; ; attempts++ {
		err = pgx.BeginTxFunc(ctx, db, o.TxOptions, func(tx pgx.Tx) error { return fn(ctx, tx) })
		if err == nil || !pgerr.Retryable(err) {
			return attempts, err
		}
		if attempts >= o.MaxAttempts {
			if pgerr.Is(err, pgerr.DeadlockDetected) && !errors.Is(err, ErrDeadlock) {
				err = fmt.Errorf("%w: %w", ErrDeadlock, err)
			}
			return attempts, fmt.Errorf("pessimistic: gave up after %d attempts: %w", attempts, err)
		}
		if serr := backoff.Sleep(ctx, backoff.Delay(attempts, o.BaseDelay, o.MaxDelay)); serr != nil {
			return attempts, serr
		}
	}
}
