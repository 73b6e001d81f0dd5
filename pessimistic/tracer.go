package pessimistic

import (
	"context"
	"errors"
	"time"

	"github.com/pgonce/pgonce/dedupe"
)

// The lock helpers report to a dedupe.Tracer, the one interface every pgonce component
// traces through (otelpgonce adapts it to OpenTelemetry). RowLock and RunOnce carry one
// (RowLock.Tracer, RunOnceOptions.Tracer). The advisory-lock functions (XactLock,
// TryXactLock, WithSessionLock, ...) take no options and are not traced here: each is a
// single statement tagged /* pgonce:... */, which a pgx QueryTracer on the pool already sees.

// lockTrace is one traced RowLock or RunOnce call.
type lockTrace struct {
	tracer dedupe.Tracer
	start  time.Time
}

func traceStart(ctx context.Context, tracer dedupe.Tracer, operation, scope, key string, withKey bool) (context.Context, *lockTrace) {
	t := &lockTrace{tracer: tracer, start: time.Now()}
	ctx = tracer.TraceDoStart(ctx, dedupe.StartData(dedupe.ComponentPessimistic, operation, scope, key, withKey))
	return ctx, t
}

// endLock reports a RowLock call: the whole call counts as waiting for the lock.
func (t *lockTrace) endLock(ctx context.Context, err error) {
	d := time.Since(t.start)
	data := dedupe.TraceDoEndData{Wait: d, Duration: d, Err: err}
	switch {
	case err == nil:
		data.Outcome = dedupe.OutcomeObtained
	case errors.Is(err, ErrLockNotAvailable):
		data.Outcome = dedupe.OutcomeNotObtained
	case errors.Is(err, ErrInvalid):
		data.Outcome = dedupe.OutcomeInvalid
	default:
		data.Outcome = dedupe.OutcomeError
	}
	t.tracer.TraceDoEnd(ctx, data)
}

// endRun reports a RunOnce call: RunRan as executed, RunAlreadyRan as replayed,
// RunRunningElsewhere as in progress.
func (t *lockTrace) endRun(ctx context.Context, outcome RunOutcome, err error) {
	d := time.Since(t.start)
	data := dedupe.TraceDoEndData{Duration: d, Err: err}
	switch {
	case err == nil && outcome == RunRan:
		data.Outcome, data.Attempts = dedupe.OutcomeExecuted, 1
	case err == nil && outcome == RunAlreadyRan:
		data.Outcome, data.Source = dedupe.OutcomeReplayed, dedupe.SourcePostgres
	case err == nil:
		data.Outcome = dedupe.OutcomeInProgress
	case errors.Is(err, ErrInvalid):
		data.Outcome = dedupe.OutcomeInvalid
	default:
		data.Outcome = dedupe.OutcomeError
	}
	t.tracer.TraceDoEnd(ctx, data)
}
