package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// failover is a primary and a streaming standby owned by this run, failed over mid-run.
type failover struct {
	pair *harness.PGPair
	stop func()
	wg   sync.WaitGroup
	err  error
	at   time.Duration // run start → the primary was killed
	took time.Duration // kill → the standby accepted writes
}

// startFailover starts the pair (mode "sync" or "async").
func startFailover(mode string) (*failover, error) {
	if mode != "sync" && mode != "async" {
		return nil, fmt.Errorf("-failover %q: want sync or async", mode)
	}
	pair, stop, err := harness.StartPrimaryStandby(mode == "sync")
	if err != nil {
		return nil, err
	}
	return &failover{pair: pair, stop: stop}, nil
}

// schedule kills the primary after d and promotes the standby, in the background.
func (f *failover) schedule(ctx context.Context, d time.Duration) {
	start := time.Now()
	f.wg.Go(func() {
		select {
		case <-ctx.Done():
			f.err = ctx.Err()
			return
		case <-time.After(d):
		}
		if f.err = f.pair.KillPrimary(); f.err != nil {
			return
		}
		killed := time.Now()
		f.at = killed.Sub(start)
		f.err = f.pair.Promote(ctx)
		f.took = time.Since(killed)
	})
}

// wait waits for the failover and returns its error.
func (f *failover) wait() error {
	f.wg.Wait()
	if f.err != nil {
		return fmt.Errorf("failover: %w", f.err)
	}
	fmt.Printf("failover: primary killed (pg_ctl stop -m immediate) %v into the run, standby accepted writes %v later\n",
		f.at.Round(time.Millisecond), f.took.Round(time.Millisecond))
	return nil
}

// checkPool connects to the promoted standby, the new primary, in schema: the checker reads
// what survived there and nowhere else.
func (f *failover) checkPool(ctx context.Context, schema string) (*pgxpool.Pool, error) {
	return pgxpool.New(ctx, pgtest.WithSearchPath(f.pair.Standby.URL, schema))
}
