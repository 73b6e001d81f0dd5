package pessimistic

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/inputerr"
)

// RunOutcome is what a RunOnce call did. All three are normal outcomes, not errors: when many
// processes start the same job, all but one are meant to not run it.
type RunOutcome int

const (
	// RunRan: this call ran fn, and its run committed.
	RunRan RunOutcome = iota + 1
	// RunRunningElsewhere: another process is running the job for this period right now;
	// fn did not run. It does not mean that run will succeed: if it fails, the period stays
	// free for a later call.
	RunRunningElsewhere
	// RunAlreadyRan: a run of the job for this period committed before; fn did not run.
	RunAlreadyRan
)

// String returns the outcome's name as logged: ran, running_elsewhere, already_ran.
func (o RunOutcome) String() string {
	switch o {
	case RunRan:
		return "ran"
	case RunRunningElsewhere:
		return "running_elsewhere"
	case RunAlreadyRan:
		return "already_ran"
	}
	return fmt.Sprintf("RunOutcome(%d)", int(o))
}

// RunOnceOptions configures RunOnce. A nil *RunOnceOptions means the defaults.
type RunOnceOptions struct {
	// Deduper records the runs; default dedupe.New(nil) (table dedupe_keys).
	Deduper *dedupe.Deduper
	// Remember is how long a finished run is remembered; default 400 days. After it, the same
	// (job, period) can run again, and dedupe.Purge may delete the record.
	Remember time.Duration
	// Tracer, when set, is told when each RunOnce begins and ends (component
	// dedupe.ComponentPessimistic, operation dedupe.OperationRunOnce, scope "job:"+job, key
	// the period): RunRan is reported as executed, RunAlreadyRan as replayed,
	// RunRunningElsewhere as in_progress.
	Tracer dedupe.Tracer
	// TraceKeys puts the period itself in traces, not only its hash.
	TraceKeys bool
}

// RunOnce runs fn for (job, period) at most once across all processes sharing the database:
// the scheduled job that every node starts at midnight ("daily-report", "2026-11-22"). Of N
// concurrent callers exactly one runs fn and gets RunRan (or fn's error); the others get
// RunRunningElsewhere at once, without waiting; callers after a run committed get
// RunAlreadyRan. The error is reserved for what went wrong (fn's error, the database's,
// invalid input), and the outcome is then zero. fn runs in a
// transaction on db together with the record of the run, so a run that fails (fn returns an
// error, the process dies) records nothing and the next call runs it again.
//
// Mechanism: BEGIN; a transaction-scoped advisory try-lock on RunOnceKey(job, period)
// (never waits: RunRunningElsewhere when held); then dedupe.Do in the same transaction for the
// request (scope "job:"+job, key period), which replays (RunAlreadyRan) if the run committed before,
// and otherwise runs fn and stores the record with fn's writes; COMMIT releases the lock.
// Cost: BEGIN, the try-lock, the dedupe claim, fn's statements, the record and COMMIT; the
// advisory lock and a connection are held while fn runs. A run's serialization failure or
// deadlock is not retried here: it comes back as an error, and the period stays free.
//
// db may be a pool, a connection or the caller's pgx.Tx (then RunOnce uses a savepoint, and
// the run commits, and the lock is released, with the caller's transaction). job must be
// a valid dedupe scope once prefixed with "job:", period a valid dedupe key (non-empty).
func RunOnce(ctx context.Context, db Beginner, job, period string, opts *RunOnceOptions, fn func(ctx context.Context, tx pgx.Tx) error) (outcome RunOutcome, err error) {
	if opts != nil && opts.Tracer != nil {
		var t *lockTrace
		ctx, t = traceStart(ctx, opts.Tracer, dedupe.OperationRunOnce, "job:"+job, period, opts.TraceKeys)
		defer func() { t.endRun(ctx, outcome, err) }()
	}
	return runOnce(ctx, db, job, period, opts, fn)
}

func runOnce(ctx context.Context, db Beginner, job, period string, opts *RunOnceOptions, fn func(ctx context.Context, tx pgx.Tx) error) (RunOutcome, error) {
	if fn == nil {
		return 0, ErrNilFunc
	}
	if inputerr.IsNil(db) {
		return 0, ErrNilDB
	}
	if job == "" {
		return 0, fmt.Errorf("%w: empty job name", ErrInvalid)
	}
	req := dedupe.Request{Scope: "job:" + job, Key: period}
	if err := dedupe.ValidateScope(req.Scope); err != nil {
		return 0, fmt.Errorf("%w: job: %w", ErrInvalid, err)
	}
	if err := dedupe.ValidateKey(req.Key); err != nil {
		return 0, fmt.Errorf("%w: period: %w", ErrInvalid, err)
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
	var outcome RunOutcome
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		ok, err := TryXactLock(ctx, tx, RunOnceKey(job, period))
		if err != nil {
			return err
		}
		if !ok {
			outcome = RunRunningElsewhere
			return nil // nothing was written: committing the empty transaction ends it
		}
		res, err := d.Do(ctx, tx, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			return dedupe.Response{Status: 200}, fn(ctx, tx)
		})
		if err != nil {
			return err
		}
		outcome = RunRan
		if res.Replayed() {
			outcome = RunAlreadyRan
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return outcome, nil
}

// RunOnceKey is the advisory lock key RunOnce holds while running (job, period):
// AdvisoryKey("run-once:" + job + "\x1f" + period), the unit separator keeping ("a", "b:c") and
// ("a:b", "c") apart. Other tools can take the same lock with the SQL in AdvisoryKey's documentation.
func RunOnceKey(job, period string) int64 {
	return AdvisoryKey("run-once:" + job + "\x1f" + period)
}
