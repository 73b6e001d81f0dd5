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
	// ErrTaken means another process is running the job for this period right now. It does
	// not mean the run will succeed: if it fails, the period stays free for a later call.
	ErrTaken = errors.New("pessimistic: job is running elsewhere")
	// ErrAlreadyRan means a run of the job for this period committed already.
	ErrAlreadyRan = errors.New("pessimistic: job already ran for this period")
)

// RunOnceOptions configures RunOnce. A nil *RunOnceOptions means the defaults.
type RunOnceOptions struct {
	// Deduper records the runs; default dedupe.New(nil) (table dedupe_keys).
	Deduper *dedupe.Deduper
	// Remember is how long a finished run is remembered; default 400 days. After it, the same
	// (job, period) can run again, and dedupe.Purge may delete the record.
	Remember time.Duration
}

// RunOnce runs fn for (job, period) at most once across all processes sharing the database:
// the scheduled job that every node starts at midnight ("daily-report", "2026-11-22"). Of N
// concurrent callers exactly one runs fn and gets its result; the others get ErrTaken at
// once, without waiting; callers after a run committed get ErrAlreadyRan. fn runs in a
// transaction on db together with the record of the run, so a run that fails (fn returns an
// error, the process dies) records nothing and the next call runs it again.
//
// Mechanism: BEGIN; a transaction-scoped advisory try-lock on RunOnceKey(job, period)
// (never waits: ErrTaken when held); then dedupe.Do in the same transaction for the request
// (scope "job:"+job, key period), which replays (ErrAlreadyRan) if the run committed before,
// and otherwise runs fn and stores the record with fn's writes; COMMIT releases the lock.
// Cost: BEGIN, the try-lock, the dedupe claim, fn's statements, the record and COMMIT; the
// advisory lock and a connection are held while fn runs. A run's serialization failure or
// deadlock is not retried here: it comes back as an error, and the period stays free.
//
// db may be a pool, a connection or the caller's pgx.Tx (then RunOnce uses a savepoint, and
// the run commits, and the lock is released, with the caller's transaction). job must be
// a valid dedupe scope once prefixed with "job:", period a valid dedupe key (non-empty).
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
			return fmt.Errorf("%w: %s for %s", ErrTaken, job, period)
		}
		res, err := d.Do(ctx, tx, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			return dedupe.Response{Status: 200}, fn(ctx, tx)
		})
		if err != nil {
			return err
		}
		if res.Replayed {
			return fmt.Errorf("%w: %s for %s", ErrAlreadyRan, job, period)
		}
		return nil
	})
}

// RunOnceKey is the advisory lock key RunOnce holds while running (job, period):
// Key("run-once:" + job + "\x1f" + period), the unit separator keeping ("a", "b:c") and
// ("a:b", "c") apart. Other tools can take the same lock with the SQL in Key's documentation.
func RunOnceKey(job, period string) int64 {
	return Key("run-once:" + job + "\x1f" + period)
}
