package redisguard

import (
	"context"

	"github.com/pgonce/pgonce/dedupe"
)

// Wrap returns a Runner that runs r behind g (see Do), for code that takes a Runner, such
// as dedupehttp.Config.Runner.
func (g *Guard) Wrap(r dedupe.Runner) dedupe.Runner { return guarded{g: g, r: r} }

type guarded struct {
	g *Guard
	r dedupe.Runner
}

func (w guarded) Do(ctx context.Context, db dedupe.DB, req dedupe.Request, fn dedupe.Func) (dedupe.Result, error) {
	return w.g.Do(ctx, w.r, db, req, fn)
}

// BodyCodec reports the body codec the guard seals cached bodies with, or the inner
// runner's, so a guard stacked on this one seals with it too.
func (w guarded) BodyCodec() dedupe.BodyCodec { return w.g.codecFor(w.r) }

// MaxResponseBytes reports the inner runner's limit on stored responses (0 when it reports
// none), so that dedupehttp's default limit follows the Deduper behind the guard.
func (w guarded) MaxResponseBytes() int {
	if l, ok := w.r.(interface{ MaxResponseBytes() int }); ok {
		return l.MaxResponseBytes()
	}
	return 0
}

// codecFor is the codec that seals what g caches in front of r: GuardOptions.BodyCodec, else
// r's own when r reports one (*dedupe.Deduper and Wrap's runner do), else none.
func (g *Guard) codecFor(r dedupe.Runner) dedupe.BodyCodec {
	if g.opts.BodyCodec != nil {
		return g.opts.BodyCodec
	}
	if c, ok := r.(interface{ BodyCodec() dedupe.BodyCodec }); ok {
		return c.BodyCodec()
	}
	return nil
}
