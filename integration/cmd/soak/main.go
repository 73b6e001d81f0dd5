// Command soak runs the order service in-process (two instances on one PostgreSQL, and Redis
// when DEDUPE_TEST_REDIS_URL is set and -redis is on), drives it with a mixed hostile workload
// for -duration, and checks the recorded history against the database. It exits non-zero on
// any violation. `make soak SOAK_DURATION=30s` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

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
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	redisURL := ""
	if *withRedis {
		redisURL = os.Getenv(pgtest.EnvRedisURL)
	}
	if err := run(ctx, *duration, *clients, *instances, *record, redisURL); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, duration time.Duration, clients, instances int, record, redisURL string) error {
	base := os.Getenv(pgtest.EnvDatabaseURL)
	if base == "" {
		return fmt.Errorf("%s", pgtest.HowTo)
	}
	db, drop, err := pgtest.Create(ctx, base, "soak", &pgtest.Options{MaxConns: 4})
	if err != nil {
		return err
	}
	defer drop()
	skus := map[string]int{"plenty": 1_000_000, "scarce": 300}
	cfg := ordersvc.Config{DatabaseURL: db.URL, MaxConns: 24, RedisURL: redisURL, RedisPrefix: "soak:" + db.Schema + ":"}
	in, err := soak.Start(ctx, cfg, instances, skus)
	if err != nil {
		return err
	}
	defer in.Close()
	fmt.Printf("soak: %d clients against %d instances for %v (Redis guard: %v)\n", clients, instances, duration, redisURL != "")
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
	rep, err := soak.Check(ctx, db.Pool, rec, skus)
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
