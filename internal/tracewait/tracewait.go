// Package tracewait measures, for tracers, how long a request spent claiming its key: the
// wall time of the claim statements, which includes any wait for a concurrent duplicate that
// holds the key. A component that traces a request puts a Meter in the request's context;
// the dedupe core times each claim into every Meter of the context, so a middleware's span
// sees the wait of the Deduper.Do it wraps without the Deduper being traced itself.
package tracewait

import (
	"context"
	"sync/atomic"
	"time"
)

// Meter accumulates claim time for one traced request and every traced request enclosing it.
type Meter struct {
	parent *Meter
	ns     atomic.Int64
}

type ctxKey struct{}

// With returns ctx carrying a new Meter, nested in ctx's Meter if it has one.
// It allocates; call it only when a tracer is set.
func With(ctx context.Context) (context.Context, *Meter) {
	parent, _ := ctx.Value(ctxKey{}).(*Meter)
	m := &Meter{parent: parent}
	return context.WithValue(ctx, ctxKey{}, m), m
}

// Span is one traced request's clock: when it started, and its Meter.
type Span struct {
	start time.Time
	meter *Meter
}

// Start begins a Span now, with a new Meter in the returned context (see With). Call it only
// when a tracer is set.
func Start(ctx context.Context) (context.Context, *Span) {
	ctx, m := With(ctx)
	return ctx, &Span{start: time.Now(), meter: m}
}

// Wait returns the claim time the Span's Meter accumulated.
func (s *Span) Wait() time.Duration { return s.meter.Wait() }

// Duration returns the time since the Span started.
func (s *Span) Duration() time.Duration { return time.Since(s.start) }

// Wait returns the claim time accumulated so far.
func (m *Meter) Wait() time.Duration { return time.Duration(m.ns.Load()) }

func noop() {}

// Claim starts timing a claim and returns the function that stops it, adding the elapsed
// time to ctx's Meter and to the Meters enclosing it. Without a Meter in ctx it costs one
// context lookup, no allocation, and returns a no-op.
func Claim(ctx context.Context) (stop func()) {
	m, _ := ctx.Value(ctxKey{}).(*Meter)
	if m == nil {
		return noop
	}
	start := time.Now()
	return func() {
		d := int64(time.Since(start))
		for p := m; p != nil; p = p.parent { // m itself is never reassigned: it stays on the stack
			p.ns.Add(d)
		}
	}
}
