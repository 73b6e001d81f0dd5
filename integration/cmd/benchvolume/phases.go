package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/volume"
)

type logFunc func(format string, args ...any)

// throughput measures claims per second on the four targets in interleaved rounds (each round
// runs every target once, in an order rotated per round) and prints the side-by-side table.
func throughput(ctx context.Context, c config, pool *pgxpool.Pool, targets []*target, logf logFunc) error {
	type cell struct {
		ops []float64
		p99 []time.Duration
		// Totals over rounds, divided by claims when printed: WAL bytes, full-page images,
		// blocks of the target read from outside shared_buffers, and ms spent reading blocks.
		wal, fpi, reads, readMs, claims float64
	}
	cells := map[string]*cell{}
	errs := 0
	for _, n := range c.clients {
		for r := range c.rounds {
			logf("throughput: %d clients, round %d/%d", n, r+1, c.rounds)
			for i := range targets {
				t := targets[(i+r)%len(targets)]
				before, err := ioStats(ctx, pool, t.schema)
				if err != nil {
					return err
				}
				ops, p99, e := volume.Throughput(ctx, t.d, pool, n, c.warmup, c.duration)
				if err := ctx.Err(); err != nil {
					return err
				}
				after, err := ioStats(ctx, pool, t.schema)
				if err != nil {
					return err
				}
				errs += e
				k := fmt.Sprintf("%s/%d", t.name, n)
				if cells[k] == nil {
					cells[k] = &cell{}
				}
				cells[k].ops = append(cells[k].ops, ops)
				cells[k].p99 = append(cells[k].p99, p99)
				cl := cells[k]
				cl.claims += ops * (c.warmup + c.duration).Seconds()
				cl.wal += after.wal - before.wal
				cl.fpi += after.fpi - before.fpi
				cl.reads += after.reads - before.reads
				cl.readMs += after.readMs - before.readMs
			}
		}
	}
	mean := func(k string) (float64, time.Duration) {
		if cells[k] == nil {
			return 0, 0
		}
		var s float64
		var p time.Duration
		for i, o := range cells[k].ops {
			s += o
			p += cells[k].p99[i]
		}
		n := len(cells[k].ops)
		return s / float64(n), p / time.Duration(n)
	}
	fmt.Printf("\n### Claim throughput: %d keys against an empty table\n\n", c.rows)
	fmt.Println("| layout | clients | empty: claims/s | empty: p99 ms | full: claims/s | full: p99 ms | full / empty (target >= 0.90) |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|")
	for _, layout := range []string{"table", "gen"} {
		if !c.layouts[layoutName(layout)] {
			continue
		}
		for _, n := range c.clients {
			e, ep := mean(fmt.Sprintf("%s_empty/%d", layout, n))
			f, fp := mean(fmt.Sprintf("%s_full/%d", layout, n))
			fmt.Printf("| %s | %d | %.0f | %.1f | %.0f | %.1f | %.2f |\n", layoutName(layout), n, e, ms(ep), f, ms(fp), f/e)
		}
	}
	if len(c.layouts) > 1 {
		fmt.Printf("\n| clients | generations / table, empty | generations / table, full (target >= 0.90) |\n|--:|--:|--:|\n")
	}
	for _, n := range c.clients {
		if len(c.layouts) < 2 {
			break
		}
		te, _ := mean(fmt.Sprintf("table_empty/%d", n))
		tf, _ := mean(fmt.Sprintf("table_full/%d", n))
		ge, _ := mean(fmt.Sprintf("gen_empty/%d", n))
		gf, _ := mean(fmt.Sprintf("gen_full/%d", n))
		fmt.Printf("| %d | %.2f | %.2f |\n", n, ge/te, gf/tf)
	}
	fmt.Printf("\nEach cell: mean of %d interleaved rounds of %v after %v of warm-up; a claim is dedupe.Do with a new\n"+
		"random key and a function that writes nothing (errors: %d).\n", c.rounds, c.duration, c.warmup, errs)
	fmt.Printf("\nWhere a claim's time goes, per claim (WAL from pg_current_wal_lsn; full-page images from pg_stat_wal;\n" +
		"blocks of the target read from outside shared_buffers from pg_statio; time reading blocks, in the whole database,\n" +
		"from pg_stat_database.blk_read_time, 0 without track_io_timing; the last three are flushed by backends about\n" +
		"once a second, so near):\n\n")
	fmt.Println("| target | clients | WAL bytes | full-page images | blocks read | µs reading |")
	fmt.Println("|---|--:|--:|--:|--:|--:|")
	for _, t := range targets {
		for _, n := range c.clients {
			if cl := cells[fmt.Sprintf("%s/%d", t.name, n)]; cl != nil && cl.claims > 0 {
				fmt.Printf("| %s | %d | %.0f | %.2f | %.2f | %.0f |\n", t.name, n, cl.wal/cl.claims, cl.fpi/cl.claims, cl.reads/cl.claims, 1000*cl.readMs/cl.claims)
			}
		}
	}
	return nil
}

// prewarm reads every index of the targets' schemas in with pg_prewarm, in mode read (into the
// operating system's page cache) or buffer (into shared_buffers, as far as it holds them): the
// claims then find the index leaves in memory, as a service's would once its indexes have
// been read in, instead of on disk after the fill.
func prewarm(ctx context.Context, pool *pgxpool.Pool, targets []*target, mode string, logf logFunc) error {
	for _, t := range targets {
		var blocks int64
		if err := pool.QueryRow(ctx, `SELECT coalesce(sum(public.pg_prewarm(c.oid, $2)), 0)::bigint
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relkind = 'i'`, t.schema, mode).Scan(&blocks); err != nil {
			return fmt.Errorf("prewarm %s (scripts/services.sh creates the pg_prewarm extension): %w", t.schema, err)
		}
		logf("prewarm: %s, %d index blocks read", t.schema, blocks)
	}
	// The fills' dirty pages are written out now, not by a checkpoint during the rounds.
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		logf("prewarm: no CHECKPOINT (%v)", err)
	}
	return nil
}

// ioSnapshot is what ioStats reads; throughput subtracts one before a cell from one after.
type ioSnapshot struct{ wal, fpi, reads, readMs float64 }

// ioStats reads the cluster's WAL position and full-page-image count, the blocks of schema's
// tables and indexes read from outside shared_buffers, and the database's time reading blocks.
func ioStats(ctx context.Context, pool *pgxpool.Pool, schema string) (ioSnapshot, error) {
	var x ioSnapshot
	err := pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8,
	(SELECT wal_fpi::float8 FROM pg_stat_wal),
	(SELECT coalesce(sum(coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0)), 0)::float8
	 FROM pg_statio_all_tables WHERE schemaname = $1),
	(SELECT blk_read_time FROM pg_stat_database WHERE datname = current_database())`, schema).Scan(&x.wal, &x.fpi, &x.reads, &x.readMs)
	return x, err
}

func layoutName(s string) string {
	if s == "gen" {
		return "generations"
	}
	return "table"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// purgeRun is one purge measured against concurrent writers.
type purgeRun struct {
	removed              int64
	took                 time.Duration
	baseP50, baseP99     time.Duration
	baseN                int
	duringP50, duringP99 time.Duration
	duringMax            time.Duration
	duringN, errs        int
	afterP99             time.Duration // the second after the purge, for the instant one
	// The p99 of the baseline cut into windows as long as the purge (median and highest):
	// how far a window that short moves with no purge at all. nil when the purge outlasted
	// the baseline.
	windowP99s              []time.Duration
	wal                     int64 // WAL bytes written during the purge (writers included)
	purgeStart, purgeFinish time.Time
}

// measurePurge runs c.writers writers on t, measures them for c.baseline, runs purge, and
// keeps the writers for one more second.
func measurePurge(ctx context.Context, c config, pool *pgxpool.Pool, t *target, purge func() (int64, error)) (purgeRun, error) {
	var r purgeRun
	stop := make(chan struct{})
	done := make(chan *volume.Latencies)
	go func() { done <- volume.Run(ctx, t.d, pool, c.writers, stop) }()
	begin := time.Now()
	select {
	case <-time.After(c.baseline):
	case <-ctx.Done():
	}
	var lsn0, lsn1 string
	_ = pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn0)
	r.purgeStart = time.Now()
	removed, err := purge()
	r.purgeFinish = time.Now()
	_ = pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn1)
	_ = pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint`, lsn1, lsn0).Scan(&r.wal)
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	close(stop)
	l := <-done
	if err != nil {
		return r, err
	}
	r.removed, r.took, r.errs = removed, r.purgeFinish.Sub(r.purgeStart), l.Errs
	base := l.Window(begin.Add(c.baseline/5), r.purgeStart) // the first fifth warms up
	during := l.Window(r.purgeStart, r.purgeFinish)
	after := l.Window(r.purgeFinish, r.purgeFinish.Add(time.Second))
	r.baseN, r.duringN = len(base), len(during)
	r.baseP50, r.baseP99 = volume.Percentile(base, 0.5), volume.Percentile(base, 0.99)
	r.duringP50, r.duringP99 = volume.Percentile(during, 0.5), volume.Percentile(during, 0.99)
	r.duringMax = volume.Percentile(during, 1)
	r.afterP99 = volume.Percentile(after, 0.99)
	baseFrom := begin.Add(c.baseline / 5)
	for w := baseFrom; r.took > 0 && !w.Add(r.took).After(r.purgeStart); w = w.Add(r.took) {
		if ws := l.Window(w, w.Add(r.took)); len(ws) > 0 {
			r.windowP99s = append(r.windowP99s, volume.Percentile(ws, 0.99))
		}
	}
	slices.Sort(r.windowP99s)
	return r, nil
}

// purges removes the full tables' expired keys: a rotation that truncates the dead
// generation (dedupe.Purge on the generations layout: its two statements, timed one by one),
// then batched DELETE (dedupe.Purge, batches of dedupe.DefaultPurgeBatch as pgonce purge runs
// it). The instant one goes first, so that it does not run into the checkpoints that the
// DELETEs' WAL sets off.
func purges(ctx context.Context, c config, pool *pgxpool.Pool, tFull, gFull *target, logf logFunc) error {
	type result struct {
		name string
		r    purgeRun
	}
	var results []result
	var rotateTook, dropTook time.Duration
	// The expired keys were written a rotation period (hours) before their purge, and many
	// checkpoints have written their pages out since; without this one the purge would also
	// pay for the fill's dirty pages. It needs pg_checkpoint (scripts/services.sh grants it).
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		logf("no CHECKPOINT before the purges (%v): the purges also pay for the fill's dirty pages", err)
	} else {
		logf("CHECKPOINT before the purges, as a rotation period's checkpoints would have done")
	}
	if gFull != nil {
		logf("purge: %d expired keys by rotation and TRUNCATE, %d writers", c.rows, c.writers)
		if _, err := pool.Exec(ctx, fmt.Sprintf(`UPDATE %s SET started_at = '-infinity'`, pgx.Identifier{gFull.schema, "dedupe_generations"}.Sanitize())); err != nil {
			return err
		}
		gr, err := measurePurge(ctx, c, pool, gFull, func() (int64, error) {
			t0 := time.Now()
			if _, err := pool.Exec(ctx, fmt.Sprintf(`SELECT * FROM %s()`, pgx.Identifier{gFull.schema, "dedupe_gen_rotate"}.Sanitize())); err != nil {
				return 0, err
			}
			rotateTook = time.Since(t0)
			t0 = time.Now()
			var n int64
			err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT %s()`, pgx.Identifier{gFull.schema, "dedupe_gen_drop_dead"}.Sanitize())).Scan(&n)
			dropTook = time.Since(t0)
			return n, err
		})
		if err != nil {
			return err
		}
		results = append(results, result{"generations: rotate + TRUNCATE", gr})
	}
	if tFull != nil {
		logf("purge: %d expired keys by batched DELETE, %d writers", c.rows, c.writers)
		tr, err := measurePurge(ctx, c, pool, tFull, func() (int64, error) {
			return tFull.d.Purge(ctx, pool, dedupe.DefaultPurgeBatch)
		})
		if err != nil {
			return err
		}
		results = append(results, result{"table: batched DELETE", tr})
	}
	fmt.Printf("\n### Removing %d expired keys while %d writers claim new keys\n\n", c.rows, c.writers)
	fmt.Println("| layout | purge took | keys removed | WAL written | writers without purge: p50 / p99 ms (n) | during purge: p50 / p99 / max ms (n) | p99 during / without | p99 of purge-long windows without purge: median / max ms (windows) | p99 in the second after |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	errs := ""
	for _, x := range results {
		ratio := "-"
		if x.r.baseP99 > 0 && x.r.duringN > 0 {
			ratio = fmt.Sprintf("%.2f", float64(x.r.duringP99)/float64(x.r.baseP99))
		}
		windows := "- (purge longer than the baseline)"
		if n := len(x.r.windowP99s); n > 0 {
			windows = fmt.Sprintf("%.1f / %.1f (%d)", ms(x.r.windowP99s[n/2]), ms(x.r.windowP99s[n-1]), n)
		}
		fmt.Printf("| %s | %v | %d | %s | %.1f / %.1f (%d) | %.1f / %.1f / %.1f (%d) | %s | %s | %.1f |\n", x.name, x.r.took.Round(time.Millisecond),
			x.r.removed, mb(x.r.wal), ms(x.r.baseP50), ms(x.r.baseP99), x.r.baseN, ms(x.r.duringP50), ms(x.r.duringP99), ms(x.r.duringMax), x.r.duringN, ratio, windows, ms(x.r.afterP99))
		errs += fmt.Sprintf(" %d", x.r.errs)
	}
	fmt.Printf("\nWriters: dedupe.Do with new keys on the same table, in a closed loop; \"during\" is every claim in flight at some\n"+
		"moment of the purge. A short window's p99 is its few slowest claims, so the baseline is also cut into windows as\n"+
		"long as the purge: a purge's p99 within their spread is no regression. Keys removed by the generations layout is\n"+
		"the planner's estimate (pg_class.reltuples). Writer errors:%s.\n", errs)
	if gFull != nil {
		fmt.Printf("Generations: the rotation took %v, the TRUNCATE of the dead generation (lock wait for the claims in flight\n"+
			"at the rotation included) %v.\n", rotateTook.Round(time.Millisecond), dropTook.Round(time.Millisecond))
	}
	return nil
}

func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

// cycles fills, expires and purges -cycle-rows keys three times in fresh schemas of both
// layouts, and prints the sizes after each fill and each purge.
func cycles(ctx context.Context, c config, pool *pgxpool.Pool, newTarget func(string, dedupe.Layout) (*target, func(), error), logf logFunc) error {
	doT, doG := c.layouts["table"], c.layouts["generations"]
	tt, dropT, err := newTarget("table_cycles", dedupe.LayoutTable)
	if err != nil {
		return err
	}
	defer dropT()
	gt, dropG, err := newTarget("gen_cycles", dedupe.LayoutGenerations)
	if err != nil {
		return err
	}
	defer dropG()
	genTables := []string{"dedupe_keys_g0", "dedupe_keys_g1", "dedupe_keys_g2"}
	state := pgx.Identifier{gt.schema, "dedupe_generations"}.Sanitize()
	type row struct {
		afterFill, afterPurge   volume.Size
		purge, vacuum           time.Duration
		gAfterFill, gAfterPurge volume.Size
		gPurge                  time.Duration
	}
	var rows []row
	for cycle := range 3 {
		var r row
		from := 1 + cycle*c.cycleRows
		if doT {
			if err := tableCycle(ctx, c, pool, tt, from, &r.afterFill, &r.afterPurge, &r.purge, &r.vacuum, logf, cycle); err != nil {
				return err
			}
		}
		if !doG {
			rows = append(rows, r)
			continue
		}
		logf("cycle %d/3: generations layout", cycle+1)
		var cur int64
		if err := pool.QueryRow(ctx, "SELECT current FROM "+state).Scan(&cur); err != nil {
			return err
		}
		if err := volume.Fill(ctx, pool, gt.schema, fmt.Sprintf("dedupe_keys_g%d", cur%3), from, c.cycleRows, true, false); err != nil {
			return err
		}
		if r.gAfterFill, err = volume.Sizes(ctx, pool, gt.schema, genTables...); err != nil {
			return err
		}
		// Two rotations make the filled generation dead; the second purge truncates it.
		t0 := time.Now()
		for range 2 {
			if _, err := pool.Exec(ctx, "UPDATE "+state+" SET started_at = '-infinity'"); err != nil {
				return err
			}
			if _, err := gt.d.Purge(ctx, pool, 0); err != nil {
				return err
			}
		}
		r.gPurge = time.Since(t0)
		if r.gAfterPurge, err = volume.Sizes(ctx, pool, gt.schema, genTables...); err != nil {
			return err
		}
		rows = append(rows, r)
	}
	fmt.Printf("\n### Size across three cycles of filling %d expired keys and purging them\n\n", c.cycleRows)
	fmt.Println("| cycle | table: after fill (heap + indexes) | table: purge, VACUUM | table: after purge + VACUUM | generations: after fill | generations: purge | generations: after purge |")
	fmt.Println("|--:|--:|--:|--:|--:|--:|--:|")
	for i, r := range rows {
		fmt.Printf("| %d | %s + %s | %v, %v | %s + %s | %s + %s | %v | %s + %s |\n", i+1,
			mb(r.afterFill.Table), mb(r.afterFill.Indexes), r.purge.Round(time.Millisecond), r.vacuum.Round(time.Millisecond),
			mb(r.afterPurge.Table), mb(r.afterPurge.Indexes), mb(r.gAfterFill.Table), mb(r.gAfterFill.Indexes),
			r.gPurge.Round(time.Millisecond), mb(r.gAfterPurge.Table), mb(r.gAfterPurge.Indexes))
	}
	fmt.Printf("\nFills go through the indexes (INSERT ... SELECT, random keys), as a service's inserts would. The\n" +
		"generations layout's sizes are the sum of its three tables; its purge is two forced rotations.\n")
	return nil
}

// tableCycle is one cycle of the default layout: fill through the indexes, purge, VACUUM.
func tableCycle(ctx context.Context, c config, pool *pgxpool.Pool, tt *target, from int, afterFill, afterPurge *volume.Size, purge, vacuum *time.Duration, logf logFunc, cycle int) error {
	logf("cycle %d/3: table layout", cycle+1)
	var err error
	if err = volume.Fill(ctx, pool, tt.schema, "dedupe_keys", from, c.cycleRows, true, false); err != nil {
		return err
	}
	if *afterFill, err = volume.Sizes(ctx, pool, tt.schema, "dedupe_keys"); err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := tt.d.Purge(ctx, pool, dedupe.DefaultPurgeBatch); err != nil {
		return err
	}
	*purge = time.Since(t0)
	// What autovacuum would do after the purge, done at once so the next fill can reuse the
	// space (without it the table only grows).
	t0 = time.Now()
	if _, err := pool.Exec(ctx, "VACUUM "+pgx.Identifier{tt.schema, "dedupe_keys"}.Sanitize()); err != nil {
		return err
	}
	*vacuum = time.Since(t0)
	*afterPurge, err = volume.Sizes(ctx, pool, tt.schema, "dedupe_keys")
	return err
}
