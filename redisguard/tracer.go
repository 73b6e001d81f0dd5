package redisguard

import (
	"context"
	"errors"
	"time"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/tracewait"
)

// guardTrace is one traced call of Guard.Do.
type guardTrace struct {
	tracer dedupe.Tracer
	span   *tracewait.Span
}

func (g *Guard) traceStart(ctx context.Context, req dedupe.Request) (context.Context, *guardTrace) {
	t := &guardTrace{tracer: g.opts.Tracer}
	ctx = t.tracer.TraceDoStart(ctx, dedupe.StartData(dedupe.ComponentRedisGuard, dedupe.OperationDo, req.Scope, req.Key, g.opts.TraceKeys))
	ctx, t.span = tracewait.Start(ctx)
	return ctx, t
}

// end reports the result (Result.Source says who answered).
func (t *guardTrace) end(ctx context.Context, res *dedupe.Result, err *error) {
	t.tracer.TraceDoEnd(ctx, dedupe.EndData(*res, *err, t.span.Wait(), t.span.Duration()))
}

// obtainTrace is one traced call of Locker.Obtain.
type obtainTrace struct {
	tracer dedupe.Tracer
	start  time.Time
}

func (l *Locker) traceStart(ctx context.Context, key string) (context.Context, *obtainTrace) {
	t := &obtainTrace{tracer: l.opts.Tracer, start: time.Now()}
	ctx = t.tracer.TraceDoStart(ctx, dedupe.StartData(dedupe.ComponentRedisGuard, dedupe.OperationObtain, "", key, l.opts.TraceKeys))
	return ctx, t
}

// end reports the outcome; the whole call counts as waiting for the lock.
func (t *obtainTrace) end(ctx context.Context, lock **Lock, err *error) {
	d := time.Since(t.start)
	data := dedupe.TraceDoEndData{Wait: d, Duration: d, Err: *err}
	switch {
	case *lock != nil:
		data.Outcome = dedupe.OutcomeObtained
	case errors.Is(*err, ErrNotObtained):
		data.Outcome = dedupe.OutcomeNotObtained
	case errors.Is(*err, ErrInvalid):
		data.Outcome = dedupe.OutcomeInvalid
	default:
		data.Outcome = dedupe.OutcomeError
	}
	t.tracer.TraceDoEnd(ctx, data)
}
