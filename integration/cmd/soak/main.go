// Command soak runs the order service in-process (two instances on one PostgreSQL, and Redis
// when DEDUPE_TEST_REDIS_URL is set and -redis is on), drives it with a mixed hostile workload
// for -duration, and checks the recorded history against the database. It exits non-zero on
// any violation. `make soak SOAK_DURATION=30s` runs it.
//
// With -pgbouncer the services reach PostgreSQL through the PgBouncer at
// DEDUPE_TEST_PGBOUNCER_URL (transaction pooling) in -query-mode, on a database of their own
// that is migrated on the direct URL; `make test` runs a slice of that too.
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
	flag.Parse()
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
	if err := run(ctx, *duration, *clients, *instances, *record, redisURL, mode); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// run soaks the services; a non-empty pgbouncerMode puts PgBouncer in front in that query mode.
func run(ctx context.Context, duration time.Duration, clients, instances int, record, redisURL, pgbouncerMode string) error {
	base := os.Getenv(pgtest.EnvDatabaseURL)
	if base == "" {
		return fmt.Errorf("%s", pgtest.HowTo)
	}
	cfg, check, drop, err := database(ctx, base, pgbouncerMode)
	if err != nil {
		return err
	}
	defer drop()
	skus := map[string]int{"plenty": 1_000_000, "scarce": 300}
	cfg.MaxConns, cfg.RedisURL = 24, redisURL
	in, err := soak.Start(ctx, cfg, instances, skus)
	if err != nil {
		return err
	}
	defer in.Close()
	via := "directly"
	if pgbouncerMode != "" {
		via = "through PgBouncer, query mode " + pgbouncerMode
	}
	fmt.Printf("soak: %d clients against %d instances for %v (Redis guard: %v; PostgreSQL %s)\n", clients, instances, duration, redisURL != "", via)
	start := time.Now()
	rec, err := soak.Run(ctx, soak.Config{Targets: in.Targets, Clients: clients, Duration: duration, SKUs: skus})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
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
	rep, err := soak.Check(ctx, check, rec, skus)
	if err != nil {
		return err
	}
	fmt.Print(rep)
	fmt.Printf("elapsed %v, %.0f requests/s\n", elapsed.Round(time.Millisecond), float64(rep.Requests)/elapsed.Seconds())
	if !rep.OK() {
		return fmt.Errorf("%d invariant violations", len(rep.Violations))
	}
	return nil
}

// database creates the soak's database: a schema on base, or with pgbouncerMode a database of
// its own reached through DEDUPE_TEST_PGBOUNCER_URL in that query mode. It returns the
// services' configuration, a pool for the checker, and the function that drops it all.
func database(ctx context.Context, base, pgbouncerMode string) (ordersvc.Config, *pgxpool.Pool, func(), error) {
	if pgbouncerMode == "" {
		db, drop, err := pgtest.Create(ctx, base, "soak", &pgtest.Options{MaxConns: 4})
		if err != nil {
			return ordersvc.Config{}, nil, nil, err
		}
		return ordersvc.Config{DatabaseURL: db.URL, RedisPrefix: "soak:" + db.Schema + ":"}, db.Pool, drop, nil
	}
	pooler := os.Getenv(pgtest.EnvPgBouncerURL)
	if pooler == "" {
		return ordersvc.Config{}, nil, nil, fmt.Errorf("%s", pgtest.HowToPgBouncer)
	}
	db, drop, err := pgtest.CreatePooled(ctx, base, pooler, "soak", &pgtest.Options{MaxConns: 4})
	if err != nil {
		return ordersvc.Config{}, nil, nil, err
	}
	u, err := url.Parse(db.URL)
	if err != nil {
		drop()
		return ordersvc.Config{}, nil, nil, err
	}
	q := u.Query()
	q.Set("default_query_exec_mode", pgbouncerMode)
	u.RawQuery = q.Encode()
	cfg := ordersvc.Config{DatabaseURL: u.String(), MigrateURL: db.DirectURL, RedisPrefix: "soak:" + db.Database + ":"}
	return cfg, db.Pool, drop, nil
}
