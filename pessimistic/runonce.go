package pessimistic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
)

var (
	// ErrTaken means another process is running the job for this period right now.
	ErrTaken = errors.New("pessimistic: job is running elsewhere")
	// ErrAlreadyRan means the job already ran (and committed) for this period.
	ErrAlreadyRan = errors.New("pessimistic: job already ran for this period")
)

// RunOnceOptions configures RunOnce. A nil *RunOnceOptions means the defaults.
type RunOnceOptions struct {
	// Deduper records the runs; default dedupe.New(nil) (table dedupe_keys).
	Deduper *dedupe.Deduper
	// Remember is how long a finished run is remembered; default 400 days. After it, the same
	// (job, period) can run again.
	Remember time.Duration
}

// RunOnce runs fn for (job, period) at most once across all processes sharing the database,
// for a scheduled job that several nodes start at the same time ("daily-report",
// "2026-11-22"). Of N concurrent callers, one runs fn and the others get ErrTaken at once
// (without waiting); callers after it committed get ErrAlreadyRan. fn runs inside a
// transaction on db together with the run's record, so a failed or crashed run records
// nothing and the next call runs it again.
//
// Mechanism: a transaction-scoped advisory try-lock on RunOnceKey(job, period) keeps
// concurrent callers out without waiting, and a dedupe row (scope "job:"+job, key period)
// committed with fn's writes records that the period is done. Cost: BEGIN, the try-lock, the
// dedupe claim, fn, the record and COMMIT.
func RunOnce(ctx context.Context, db Beginner, job, period string, opts *RunOnceOptions, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if fn == nil {
		return ErrNilFunc
	}
	if isNil(db) {
		return ErrNilDB
	}
	if job == "" {
		return fmt.Errorf("%w: empty job name", ErrInvalid)
	}
	req := dedupe.Request{Scope: "job:" + job, Key: period}
	if err := dedupe.ValidateScope(req.Scope); err != nil {
		return fmt.Errorf("%w: job: %w", ErrInvalid, err)
	}
	if err := dedupe.ValidateKey(req.Key); err != nil {
		return fmt.Errorf("%w: period: %w", ErrInvalid, err)
	}
	d, remember := dedupe.New(nil), 400*24*time.Hour
	if opts != nil {
		if opts.Deduper != nil {
			d = opts.Deduper
		}
		if opts.Remember > 0 {
			remember = opts.Remember
		}
	}
	req.TTL = remember
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		ok, err := TryXactLock(ctx, tx, RunOnceKey(job, period))
		if err != nil {
			return err
		}
		if !ok {
			return ErrTaken
		}
		res, err := d.Do(ctx, tx, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			return dedupe.Response{Status: 200}, fn(ctx, tx)
		})
		if err != nil {
			return err
		}
		if res.Replayed {
			return ErrAlreadyRan
		}
		return nil
	})
}

// RunOnceKey is the advisory lock key RunOnce holds while running (job, period):
// Key("run-once:" + job + "\x1f" + period). Other tools can take the same lock with the SQL in
// Key's documentation.
func RunOnceKey(job, period string) int64 {
	return Key("run-once:" + job + "\x1f" + period)
}
