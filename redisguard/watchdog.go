package redisguard

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Watch starts a watchdog that refreshes the lock to its TTL every TTL/3 while the holder
// works, and returns a context derived from ctx for that work, and a stop function.
//
// The context is cancelled, with context.Cause wrapping ErrLockLost, as soon as a refresh
// fails (the lock expired or was taken, or Redis did not confirm it in time) or the lock's
// validity (Lock.Expiry) runs out before a refresh succeeds, whichever comes first; a
// refresh that hangs does not keep the work going past the lease. Stop the watchdog before
// or after Release, and always call stop: it ends the refreshes, waits for the watchdog's
// goroutine to exit and cancels the context. stop may be called more than once.
//
// Cost: one refresh (one round trip per node) every TTL/3; one goroutine and one timer.
func (k *Lock) Watch(ctx context.Context) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	lost := func(why error) { cancel(fmt.Errorf("%w: %w", ErrLockLost, why)) }

	// Fires when the validity runs out without a successful refresh; pushed back by each.
	expired := time.AfterFunc(time.Until(k.Expiry()), func() {
		lost(fmt.Errorf("lease of %q ran out before a refresh succeeded", k.key))
	})
	stopc := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer expired.Stop()
		tick := time.NewTicker(max(k.ttl/3, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-stopc:
				return
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			if err := k.Refresh(wctx, k.ttl); err != nil {
				select {
				case <-stopc: // stopped meanwhile (say, after Release): not a loss
				default:
					lost(err)
				}
				return
			}
			expired.Reset(time.Until(k.Expiry()))
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() { close(stopc) })
		<-done
		cancel(context.Canceled)
	}
	return wctx, stop
}
