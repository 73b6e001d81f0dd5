// Command benchvolume measures the dedupe table at volume, both layouts side by side (package
// integration/volume): claim throughput with -rows keys against an empty table, the removal of
// -rows expired keys with concurrent writers, and sizes across three fill/expire/purge cycles of
// -cycle-rows keys. `make bench-volume` runs it (about 10 minutes on 2 cores at the defaults).
// It uses DEDUPE_TEST_DATABASE_URL and schemas of its own, dropped at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/volume"
	"github.com/pgonce/pgonce/internal/pgtest"
)

type config struct {
	rows, cycleRows, rounds, writers int
	clients                          []int
	warmup, duration, baseline       time.Duration
	phases, layouts                  map[string]bool
	tablespace, genPlans, prewarm    string
}

func main() {
	var c config
	flag.IntVar(&c.rows, "rows", 10_000_000, "keys in the full tables, and expired keys removed by one purge")
	flag.IntVar(&c.cycleRows, "cycle-rows", 1_000_000, "keys per fill/expire/purge cycle (three cycles)")
	flag.IntVar(&c.rounds, "rounds", 2, "interleaved throughput rounds per cell")
	flag.IntVar(&c.writers, "writers", 8, "concurrent writers during the purges")
	levels := flag.String("clients", "8,32", "client counts for claim throughput")
	flag.DurationVar(&c.warmup, "warmup", 500*time.Millisecond, "warm-up before each throughput cell")
	flag.DurationVar(&c.duration, "duration", 3*time.Second, "measured time per throughput cell and round")
	flag.DurationVar(&c.baseline, "baseline", 5*time.Second, "writers measured without a purge, before each purge")
	phases := flag.String("phases", "throughput,purge,cycles", "which measurements to run")
	layouts := flag.String("layouts", "table,generations", "which layouts to measure")
	flag.StringVar(&c.prewarm, "prewarm", "", "read every index of the throughput targets in first (pg_prewarm, which\n"+
		"scripts/services.sh creates): read, into the page cache; buffer, into shared_buffers")
	flag.StringVar(&c.genPlans, "gen-plans", "generic", "plan_cache_mode of the generations layout's claim functions: generic, as\n"+
		"migration 0007 sets it, or auto, as before it (to measure what 0007 changed)")
	flag.StringVar(&c.tablespace, "tablespace", "", "put the benchmark's tables and indexes in this tablespace (default_tablespace);\n"+
		"make bench-volume-nodiscard uses pgonce_nodiscard (scripts/nodiscard-tablespace.sh)")
	flag.Parse()
	c.phases, c.layouts = set(*phases), set(*layouts)
	if c.prewarm != "" && c.prewarm != "read" && c.prewarm != "buffer" {
		fmt.Fprintln(os.Stderr, "benchvolume: -prewarm is read or buffer")
		os.Exit(2)
	}
	if c.genPlans != "generic" && c.genPlans != "auto" {
		fmt.Fprintln(os.Stderr, "benchvolume: -gen-plans is generic or auto")
		os.Exit(2)
	}
	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "benchvolume: bad -clients")
			os.Exit(2)
		}
		c.clients = append(c.clients, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "benchvolume:", err)
		os.Exit(1)
	}
}

// target is one schema and the Deduper that works on it.
type target struct {
	name   string
	schema string
	d      *dedupe.Deduper
	layout dedupe.Layout
}

func run(ctx context.Context, c config) error {
	base := os.Getenv(pgtest.EnvDatabaseURL)
	if base == "" {
		return fmt.Errorf("%s", pgtest.HowTo)
	}
	if c.tablespace != "" {
		// pgx sends unknown connection-string parameters as run-time parameters, so every
		// connection of the harness and of the bench creates its tables there.
		u, err := url.Parse(base)
		if err != nil {
			return err
		}
		q := u.Query()
		q.Set("default_tablespace", c.tablespace)
		u.RawQuery = q.Encode()
		base = u.String()
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "benchvolume [%s] %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	pcfg, err := pgxpool.ParseConfig(base)
	if err != nil {
		return err
	}
	pcfg.MaxConns = int32(max(slicesMax(c.clients), c.writers) + 4)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	newTarget := func(name string, layout dedupe.Layout) (*target, func(), error) {
		db, drop, err := pgtest.Create(ctx, base, "benchvol_"+name, &pgtest.Options{MaxConns: 1})
		if err != nil {
			return nil, nil, err
		}
		defer db.Pool.Close()
		if layout == dedupe.LayoutGenerations && c.genPlans == "auto" {
			for _, f := range []string{"dedupe_gen_lookup(text, text, bigint)", "dedupe_gen_insert(text, text, bytea, integer, jsonb, bytea, bigint)",
				"dedupe_gen_claim(text, text, bytea, bigint)", "dedupe_gen_store(text, text, integer, jsonb, bytea)"} {
				if _, err := db.Pool.Exec(ctx, "ALTER FUNCTION "+pgx.Identifier{db.Schema}.Sanitize()+"."+f+" RESET plan_cache_mode"); err != nil {
					drop()
					return nil, nil, err
				}
			}
		}
		return &target{name: name, schema: db.Schema, layout: layout,
			d: dedupe.New(&dedupe.Options{Schema: db.Schema, Layout: layout})}, drop, nil
	}
	var targets []*target
	var tFull, gFull *target
	var fills []string
	if c.phases["throughput"] || c.phases["purge"] {
		for _, s := range []struct {
			name   string
			layout dedupe.Layout
		}{{"table_empty", dedupe.LayoutTable}, {"table_full", dedupe.LayoutTable}, {"gen_empty", dedupe.LayoutGenerations}, {"gen_full", dedupe.LayoutGenerations}} {
			if !c.layouts[s.layout.String()] || (!c.phases["throughput"] && strings.HasSuffix(s.name, "_empty")) {
				continue
			}
			t, drop, err := newTarget(s.name, s.layout)
			if err != nil {
				return err
			}
			defer drop()
			targets = append(targets, t)
			if !strings.HasSuffix(s.name, "_full") {
				continue
			}
			// In the generations layout, generation 0 is current; the keys go to its previous
			// generation (table g2), which the purge phase's rotation makes dead and truncates.
			table := "dedupe_keys"
			if s.layout == dedupe.LayoutGenerations {
				table, gFull = "dedupe_keys_g2", t
			} else {
				tFull = t
			}
			logf("filling %s.%s with %d expired keys", t.schema, table, c.rows)
			t0 := time.Now()
			if err := volume.Fill(ctx, pool, t.schema, table, 1, c.rows, true, true); err != nil {
				return err
			}
			fills = append(fills, fmt.Sprintf("%s in %v", table, time.Since(t0).Round(time.Second)))
		}
	}
	if c.phases["throughput"] {
		if c.prewarm != "" {
			if err := prewarm(ctx, pool, targets, c.prewarm, logf); err != nil {
				return err
			}
		}
		if err := throughput(ctx, c, pool, targets, logf); err != nil {
			return err
		}
	}
	if c.phases["purge"] {
		if err := purges(ctx, c, pool, tFull, gFull, logf); err != nil {
			return err
		}
	}
	if c.phases["cycles"] {
		if err := cycles(ctx, c, pool, newTarget, logf); err != nil {
			return err
		}
	}
	if len(fills) > 0 {
		fmt.Printf("\nFills (set-up, not a result; indexes dropped and rebuilt): %d keys into %s.\n", c.rows, strings.Join(fills, ", "))
	}
	fmt.Printf("Whole run: %v.\n", time.Since(start).Round(time.Second))
	return nil
}

func set(list string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Split(list, ",") {
		m[strings.TrimSpace(f)] = true
	}
	return m
}

func slicesMax(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
