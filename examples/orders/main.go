// Command orders is a small order service built on the pgonce toolkit: POST /orders is
// exactly-once per Idempotency-Key, stock is taken in the same transaction, and the nightly
// report is built by exactly one of several instances.
//
//	orders [serve]                               run the HTTP server (default)
//	orders seed   -sku S -name N -stock N        create or reset a product
//	orders report [-day 2026-11-21]              build one day's report (default: yesterday, UTC)
//	orders burst  -targets URL,URL -sku S ...    fire duplicated requests and check the database
//	orders checkout -targets URL,URL -sku S ...  the same against the paid checkout, checking
//	                                             the provider's database too
//
// Configuration comes from flags or the environment: DATABASE_URL (required), REDIS_URL
// (optional; without it PostgreSQL alone absorbs duplicates), ADDR (default :8080),
// MIGRATE_DATABASE_URL (optional; where migrations run, default DATABASE_URL), PAYMENTS_URL
// (optional; the payment provider: POST /orders becomes a paid checkout, see ordersvc.Config),
// NOTIFY_URL (optional, with PAYMENTS_URL; where order-confirmed notifications are delivered,
// through the transactional outbox of package delivery).
//
// Behind PgBouncer in transaction pooling, point DATABASE_URL at the pooler with a query mode
// that needs no server-side prepared statements, and MIGRATE_DATABASE_URL at PostgreSQL itself
// (migrations hold a session advisory lock):
//
//	DATABASE_URL='postgres://u:p@127.0.0.1:6432/db?default_query_exec_mode=exec' \
//	MIGRATE_DATABASE_URL='postgres://u:p@127.0.0.1:5432/db' orders serve
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/examples/orders/loadgen"
	"github.com/pgonce/pgonce/examples/orders/ordersvc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args)
	case "seed":
		err = seed(ctx, args)
	case "report":
		err = report(ctx, args)
	case "burst":
		err = burst(ctx, args)
	case "checkout":
		err = checkout(ctx, args)
	default:
		err = fmt.Errorf("unknown command %q (serve, seed, report, burst, checkout)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

// common holds the flags every command shares, defaulted from the environment.
type common struct {
	cfg ordersvc.Config
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cfg.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	fs.StringVar(&c.cfg.MigrateURL, "migrate-database-url", os.Getenv("MIGRATE_DATABASE_URL"), "PostgreSQL URL for migrations, default -database-url; a direct one behind PgBouncer (env MIGRATE_DATABASE_URL)")
	fs.StringVar(&c.cfg.RedisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis URL, optional (env REDIS_URL)")
	fs.StringVar(&c.cfg.Instance, "instance", os.Getenv("INSTANCE"), "instance name in logs and reports (env INSTANCE)")
	fs.DurationVar(&c.cfg.LockWait, "lock-wait", 5*time.Second, "how long a duplicate waits for the first request before 409")
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var c common
	c.register(fs)
	addr := fs.String("addr", envOr("ADDR", ":8080"), "listen address (env ADDR)")
	reportEvery := fs.Duration("report-interval", time.Hour, "how often to try building yesterday's report (0: never)")
	purgeEvery := fs.Duration("purge-interval", 10*time.Minute, "how often to purge expired idempotency keys (0: never)")
	paymentsURL := fs.String("payments-url", os.Getenv("PAYMENTS_URL"), "payment provider base URL; makes POST /orders a paid checkout (env PAYMENTS_URL)")
	notifyURL := fs.String("notify-url", os.Getenv("NOTIFY_URL"), "where order-confirmed notifications go, with -payments-url (env NOTIFY_URL)")
	lease := fs.Duration("lease", 5*time.Second, "the paid checkout's lease: how soon a dead instance's requests are taken over")
	_ = fs.Parse(args)

	if *paymentsURL != "" {
		stopNotify, err := paidCheckout(ctx, &c.cfg, *paymentsURL, *notifyURL, *lease)
		if err != nil {
			return err
		}
		defer stopNotify()
	}
	svc, err := ordersvc.Open(ctx, c.cfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	log := svc.Logger()
	background := svc.StartBackground(ctx, *reportEvery, *purgeEvery)
	defer background()

	srv := &http.Server{Addr: *addr, Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", *addr, "redis", c.cfg.RedisURL != "")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Graceful shutdown: stop accepting, let requests in flight finish (their transactions
	// commit or roll back), then close the pools.
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func seed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	var c common
	c.register(fs)
	sku := fs.String("sku", "", "product sku (required)")
	name := fs.String("name", "demo product", "product name")
	stock := fs.Int("stock", 1000, "units in stock")
	_ = fs.Parse(args)
	if *sku == "" {
		return errors.New("seed: -sku is required")
	}
	svc, err := ordersvc.Open(ctx, c.cfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	return svc.Seed(ctx, *sku, *name, *stock)
}

func report(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	var c common
	c.register(fs)
	day := fs.String("day", time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly), "day to report on (UTC, YYYY-MM-DD)")
	_ = fs.Parse(args)
	d, err := time.Parse(time.DateOnly, *day)
	if err != nil {
		return fmt.Errorf("report: -day: %w", err)
	}
	svc, err := ordersvc.Open(ctx, c.cfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	res, err := svc.RunReport(ctx, d)
	if err != nil {
		return err
	}
	fmt.Println(res)
	return nil
}

func burst(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("burst", flag.ExitOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL, to check the outcome (env DATABASE_URL)")
	targets := fs.String("targets", "http://127.0.0.1:8080", "comma-separated base URLs of the instances")
	var cfg loadgen.Config
	fs.StringVar(&cfg.SKU, "sku", "", "product to order (required; seed it first)")
	fs.IntVar(&cfg.InitialStock, "stock", 0, "the product's stock before the burst")
	fs.IntVar(&cfg.Keys, "keys", 100, "distinct idempotency keys")
	fs.IntVar(&cfg.SendsPerKey, "sends", 5, "concurrent sends of each key")
	fs.IntVar(&cfg.Mismatches, "mismatches", 5, "keys reused afterwards with a changed body")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the targets' /healthz")
	_ = fs.Parse(args)
	cfg.Targets = strings.Split(*targets, ",")
	if err := waitReady(ctx, *wait, cfg.Targets); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	rep, err := loadgen.Run(ctx, cfg, pool)
	if err != nil {
		return err
	}
	fmt.Print(rep.Table())
	if !rep.OK() {
		return errors.New("burst: the database shows duplicates or wrong stock")
	}
	fmt.Println("no duplicates: every key created exactly one order; stock is exact")
	return nil
}

// waitReady waits up to wait for every target's /healthz to answer 200.
func waitReady(ctx context.Context, wait time.Duration, targets []string) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return loadgen.WaitReady(ctx, http.DefaultClient, targets)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
