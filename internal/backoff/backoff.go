// Package backoff computes jittered retry delays and sleeps them without ignoring a context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns the wait before retry number attempt (1 for the first retry): an exponential
// step base·2^(attempt-1) capped at max, of which a random half is kept ("equal jitter"), so
// that clients retrying together spread out while the wait still grows with every attempt.
// A non-positive base yields 0.
func Delay(attempt int, base, max time.Duration) time.Duration {
	if base <= 0 || attempt < 1 {
		return 0
	}
	if max < base {
		max = base
	}
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// Sleep waits for d or until ctx is done, whichever comes first, and returns ctx.Err() in the
// second case. A context already done, or done by the time the timer fires, ends it with its
// error, so a caller never starts another attempt on a cancelled context (when both channels
// are ready, select would pick one at random). It never leaves a timer or goroutine behind.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}
