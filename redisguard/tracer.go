package redisguard

import (
	"context"
	"time"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/tracewait"
)

// guardTrace is one traced call of Guard.Do.
type guardTrace struct {
	tracer dedupe.Tracer
	start  time.Time
	wait   *tracewait.Meter
}

func (g *Guard) traceStart(ctx context.Context, req dedupe.Request) (context.Context, *guardTrace) {
	t := &guardTrace{tracer: g.opts.Tracer, start: time.Now()}
	ctx = t.tracer.TraceDoStart(ctx, dedupe.StartData(dedupe.ComponentRedisGuard, dedupe.OperationDo, req.Scope, req.Key, g.opts.TraceKeys))
	ctx, t.wait = tracewait.With(ctx)
	return ctx, t
}

// end reports the result; a replay with no transaction (Attempts 0) came from Redis.
func (t *guardTrace) end(ctx context.Context, res *dedupe.Result, err *error) {
	t.tracer.TraceDoEnd(ctx, dedupe.EndData(*res, *err, t.wait.Wait(), time.Since(t.start)))
}
