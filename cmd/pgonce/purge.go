package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgonce/pgonce/dedupe"
)

const purgeHelp = `purge [--batch N] [--every D] [--layout table|generations] [flags]

Deletes expired keys, oldest first, in statements of at most N rows that skip rows a request
holds (dedupe.Purge), and prints how many it deleted. With --every, purges every D until
SIGINT or SIGTERM and exits 0; a failed run is reported and the next one tried.

With --layout generations (dedupe.LayoutGenerations), rotates to the next generation when the
current one is due and truncates the generation whose keys have all expired; --batch is then
unused and the count printed is the planner's estimate.`

func (a *app) purge(ctx context.Context, args []string) int {
	c := a.newCommand("purge", purgeHelp)
	batch := c.fs.Int("batch", dedupe.DefaultPurgeBatch, "rows deleted per statement")
	every := c.fs.Duration("every", 0, "purge again every `D` (e.g. 10m) until interrupted; 0: once")
	layoutName := c.fs.String("layout", "table", "the keys' layout: table (dedupe_keys) or generations")
	if _, code, ok := a.parse(c, args, 0); !ok {
		return code
	}
	layout, err := dedupe.ParseLayout(*layoutName)
	if err != nil {
		return a.usageError(c.name, err.Error(), "")
	}
	if *batch <= 0 {
		return a.usageError(c.name, fmt.Sprintf("--batch must be positive, got %d", *batch), "")
	}
	if *every < 0 {
		return a.usageError(c.name, fmt.Sprintf("--every must not be negative, got %s", *every), "")
	}
	pool, err := c.connect(ctx)
	if err != nil {
		return a.fail(c.name, err)
	}
	defer pool.Close()
	d := dedupe.New(&dedupe.Options{Schema: c.schema, Layout: layout})

	once := func() error {
		start := time.Now()
		n, err := d.Purge(ctx, pool, *batch)
		if err != nil && ctx.Err() == nil {
			return err
		}
		// When interrupted mid-run, the batches already committed are still worth reporting.
		fmt.Fprintf(a.stdout, "purged %d expired keys in %s\n", n, time.Since(start).Round(time.Millisecond))
		return nil
	}
	if *every == 0 {
		if err := once(); err != nil {
			return a.fail(c.name, err)
		}
		return exitOK
	}
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for {
		if err := once(); err != nil {
			fmt.Fprintf(a.stderr, "pgonce purge: %v (next run in %s)\n", err, *every)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(a.stdout, "stopped: %v\n", context.Cause(ctx))
			if errors.Is(ctx.Err(), context.Canceled) {
				return exitOK
			}
			return exitFail
		case <-tick.C:
		}
	}
}
