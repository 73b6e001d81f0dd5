// Command soak runs the order service in-process (two instances on one PostgreSQL, and Redis
// when DEDUPE_TEST_REDIS_URL is set and -redis is on), drives it with a mixed hostile workload
// for -duration, and checks the recorded history against the database. It exits non-zero on
// any violation. `make soak SOAK_DURATION=30s` runs it.
//
// With -pgbouncer the services reach PostgreSQL through the PgBouncer at
// DEDUPE_TEST_PGBOUNCER_URL (transaction pooling) in -query-mode, on a database of their own
// that is migrated on the direct URL; `make test` runs a slice of that too.
//
// With -failover sync (or async) it runs instead on a primary and a streaming standby of its
// own (synchronous or asynchronous replication), kills the primary after -failover-after,
// promotes the standby, and checks the history against the new primary. The services reach
// whichever server accepts writes through a multi-host URL (target_session_attrs=read-write).
// Asynchronous replication may lose acknowledged orders, so that mode reports its violations
// without failing.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/examples/orders/ordersvc"
	"github.com/pgonce/pgonce/integration/soak"
	"github.com/pgonce/pgonce/internal/pgtest"
)

func main() {
	duration := flag.Duration("duration", 60*time.Second, "how long to start new requests")
	clients := flag.Int("clients", 32, "concurrent clients")
	instances := flag.Int("instances", 2, "order service instances")
	record := flag.String("record", "", "write every request and answer to this JSONL file")
	withRedis := flag.Bool("redis", true, "put the Redis guard in front (uses DEDUPE_TEST_REDIS_URL when set)")
	pgbouncer := flag.Bool("pgbouncer", false, "serve through the PgBouncer at DEDUPE_TEST_PGBOUNCER_URL (transaction pooling)")
	queryMode := flag.String("query-mode", "exec", "pgx default_query_exec_mode of the services' pools with -pgbouncer (exec, simple_protocol, describe_exec, cache_describe)")
	failoverMode := flag.String("failover", "", "sync or async: run on an own primary + standby and fail over mid-run")
	failoverAfter := flag.Duration("failover-after", 0, "when to kill the primary; default a third of -duration")
	layoutName := flag.String("layout", "table", "dedupe layout: table, or generations (rotated twice during the run)")
	flag.Parse()
	layout, err := dedupe.ParseLayout(*layoutName)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	redisURL := ""
	if *withRedis {
		redisURL = os.Getenv(pgtest.EnvRedisURL)
	}
	mode := ""
	if *pgbouncer {
		mode = *queryMode
	}
	if *failoverAfter <= 0 {
		*failoverAfter = *duration / 3
	}
	if err := run(ctx, *duration, *clients, *instances, *record, redisURL, mode, *failoverMode, *failoverAfter, layout); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// run soaks the services; a non-empty pgbouncerMode puts PgBouncer in front in that query
// mode, a non-empty failoverMode runs on an own primary and standby and fails over mid-run.
func run(ctx context.Context, duration time.Duration, clients, instances int, record, redisURL, pgbouncerMode, failoverMode string, failoverAfter time.Duration, layout dedupe.Layout) error {
	if pgbouncerMode != "" && failoverMode != "" {
		return fmt.Errorf("-pgbouncer and -failover do not go together")
	}
	if layout != dedupe.LayoutTable && failoverMode != "" {
		return fmt.Errorf("-layout generations and -failover do not go together")
	}
	base := os.Getenv(pgtest.EnvDatabaseURL)
	var fo *failover
	if failoverMode != "" {
		var err error
		if fo, err = startFailover(failoverMode); err != nil {
			return err
		}
		defer fo.stop()
		base = fo.pair.URL
	}
	if base == "" {
		return fmt.Errorf("%s", pgtest.HowTo)
	}
	cfg, check, schema, drop, err := database(ctx, base, pgbouncerMode)
	if err != nil {
		return err
	}
	defer drop()
	skus := map[string]int{"plenty": 1_000_000, "scarce": 300}
	cfg.MaxConns, cfg.RedisURL = 24, redisURL
	if layout == dedupe.LayoutGenerations {
		_, cfg.DedupeTTL = genPeriod(duration)
		cfg.DedupeLayout = layout
	}
	in, err := soak.Start(ctx, cfg, instances, skus)
	if err != nil {
		return err
	}
	defer in.Close()
	var rot *rotator
	stopRotator := func() {}
	if layout == dedupe.LayoutGenerations {
		rotCtx, cancel := context.WithCancel(ctx)
		stopRotator = cancel
		if rot, err = startRotator(rotCtx, check, duration); err != nil {
			cancel()
			return err
		}
		defer func() { cancel(); _ = rot.wait() }() // on an early return
		period, ttl := genPeriod(duration)
		fmt.Printf("soak: generations layout, rotating every %v (keys' TTL %v)\n", period, ttl)
	}
	via := "directly"
	if pgbouncerMode != "" {
		via = "through PgBouncer, query mode " + pgbouncerMode
	}
	fmt.Printf("soak: %d clients against %d instances for %v (Redis guard: %v; PostgreSQL %s)\n", clients, instances, duration, redisURL != "", via)
	start := time.Now()
	if fo != nil {
		foCtx, cancel := context.WithCancel(ctx)
		defer func() { cancel(); fo.wg.Wait() }() // on an early return, before the servers stop
		fo.schedule(foCtx, failoverAfter)
	}
	rec, err := soak.Run(ctx, soak.Config{Targets: in.Targets, Clients: clients, Duration: duration, SKUs: skus})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	keysFrom := "dedupe_keys"
	if rot != nil {
		stopRotator()
		if err := rot.wait(); err != nil {
			return err
		}
		fmt.Printf("soak: %d rotations during the run; %d keys saved for the checker before their generation was truncated\n", rot.rotations, rot.saved)
		if rot.rotations < 2 {
			return fmt.Errorf("only %d rotations during the run; the soak needs two", rot.rotations)
		}
		keysFrom = genKeysFrom
	}
	checkPool := check
	if fo != nil {
		if err := fo.wait(); err != nil {
			return err
		}
		if checkPool, err = fo.checkPool(ctx, schema); err != nil {
			return err
		}
		defer checkPool.Close()
	}
	if record != "" {
		f, err := os.Create(record)
		if err != nil {
			return err
		}
		if err := rec.WriteJSONL(f); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	rep, err := soak.CheckKeysIn(ctx, checkPool, keysFrom, rec, skus)
	if err != nil {
		return err
	}
	fmt.Print(rep)
	fmt.Printf("elapsed %v, %.0f requests/s\n", elapsed.Round(time.Millisecond), float64(rep.Requests)/elapsed.Seconds())
	if !rep.OK() && failoverMode == "async" {
		fmt.Printf("asynchronous replication: %d violations after the failover (acknowledged orders the standby had not received), reported, not failed\n", len(rep.Violations))
		return nil
	}
	if !rep.OK() {
		return fmt.Errorf("%d invariant violations", len(rep.Violations))
	}
	if rep.Created == 0 {
		return fmt.Errorf("no request created an order: nothing was checked")
	}
	return nil
}

// database creates the soak's database: a schema on base, or with pgbouncerMode a database of
// its own reached through DEDUPE_TEST_PGBOUNCER_URL in that query mode. It returns the
// services' configuration, a pool for the checker, the schema (direct only), and the function
// that drops it all.
func database(ctx context.Context, base, pgbouncerMode string) (ordersvc.Config, *pgxpool.Pool, string, func(), error) {
	if pgbouncerMode == "" {
		db, drop, err := pgtest.Create(ctx, base, "soak", &pgtest.Options{MaxConns: 4})
		if err != nil {
			return ordersvc.Config{}, nil, "", nil, err
		}
		return ordersvc.Config{DatabaseURL: db.URL, RedisPrefix: "soak:" + db.Schema + ":"}, db.Pool, db.Schema, drop, nil
	}
	pooler := os.Getenv(pgtest.EnvPgBouncerURL)
	if pooler == "" {
		return ordersvc.Config{}, nil, "", nil, fmt.Errorf("%s", pgtest.HowToPgBouncer)
	}
	db, drop, err := pgtest.CreatePooled(ctx, base, pooler, "soak", &pgtest.Options{MaxConns: 4})
	if err != nil {
		return ordersvc.Config{}, nil, "", nil, err
	}
	u, err := url.Parse(db.URL)
	if err != nil {
		drop()
		return ordersvc.Config{}, nil, "", nil, err
	}
	q := u.Query()
	q.Set("default_query_exec_mode", pgbouncerMode)
	u.RawQuery = q.Encode()
	cfg := ordersvc.Config{DatabaseURL: u.String(), MigrateURL: db.DirectURL, RedisPrefix: "soak:" + db.Database + ":"}
	return cfg, db.Pool, "", drop, nil
}
