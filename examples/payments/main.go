// Command payments is a small payment provider built on the pgonce toolkit, with fault
// switches: the order service's foreign step charges it, and its notification route receives
// the order-confirmed notifications. See package paysvc for the API.
//
//	payments [serve]    run the HTTP server (default)
//	payments migrate    apply the migrations and exit
//	payments stats      print the counts of the provider's database as JSON
//
// Configuration comes from flags or the environment: DATABASE_URL (required), ADDR (default
// :8090), MIGRATE_DATABASE_URL (optional; where migrations run, default DATABASE_URL; a direct
// URL behind PgBouncer), and the faults, each a fraction from 0 to 1:
//
//	PAY_FAIL_BEFORE_CHARGE   -fail-before-charge   503 before charging
//	PAY_DROP_AFTER_COMMIT    -drop-after-commit    charge, commit, close the connection unanswered
//	PAY_SLOW                 -slow                 answer PAY_SLOW_DELAY late (-slow-delay, 2s)
//	PAY_DECLINE              -decline              decline the card (402), per idempotency key
//	PAY_NOTIFY_FAIL          -notify-fail          503 at POST /notifications before the effect
//	PAY_FAULT_SEED           -fault-seed           seed of the draws
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/examples/payments/paysvc"
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
	case "migrate":
		err = migrate(ctx, args)
	case "stats":
		err = stats(ctx, args)
	default:
		err = fmt.Errorf("unknown command %q (serve, migrate, stats)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "payments:", err)
		os.Exit(1)
	}
}

type dbFlags struct{ url, migrateURL string }

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.url, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	fs.StringVar(&d.migrateURL, "migrate-database-url", os.Getenv("MIGRATE_DATABASE_URL"), "PostgreSQL URL for migrations, default -database-url (env MIGRATE_DATABASE_URL)")
}

func (d *dbFlags) check() error {
	if d.url == "" {
		return errors.New("DATABASE_URL (or -database-url) is required")
	}
	return nil
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var db dbFlags
	db.register(fs)
	addr := fs.String("addr", cmp.Or(os.Getenv("ADDR"), ":8090"), "listen address (env ADDR)")
	var f paysvc.Faults
	fs.Float64Var(&f.FailBeforeCharge, "fail-before-charge", envFloat("PAY_FAIL_BEFORE_CHARGE"), "fraction of charges answered 503 before charging")
	fs.Float64Var(&f.DropAfterCommit, "drop-after-commit", envFloat("PAY_DROP_AFTER_COMMIT"), "fraction of charges committed and then left unanswered (connection closed)")
	fs.Float64Var(&f.Slow, "slow", envFloat("PAY_SLOW"), "fraction of charges answered -slow-delay late")
	fs.DurationVar(&f.SlowDelay, "slow-delay", envDuration("PAY_SLOW_DELAY", paysvc.DefaultSlowDelay), "how late a slow answer is")
	fs.Float64Var(&f.Decline, "decline", envFloat("PAY_DECLINE"), "fraction of idempotency keys whose card is declined (402)")
	fs.Float64Var(&f.NotifyFail, "notify-fail", envFloat("PAY_NOTIFY_FAIL"), "fraction of notifications answered 503 before the effect")
	seed := fs.Uint64("fault-seed", envUint("PAY_FAULT_SEED"), "seed of the fault draws (default: the time)")
	lockWait := fs.Duration("lock-wait", 5*time.Second, "how long a duplicate waits for the first request before 409")
	_ = fs.Parse(args)
	if err := db.check(); err != nil {
		return err
	}
	f.Seed = *seed
	if f.Seed == 0 {
		f.Seed = uint64(time.Now().UnixNano())
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("instance", "payments")
	if err := paysvc.Migrate(ctx, cmp.Or(db.migrateURL, db.url)); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, db.url)
	if err != nil {
		return err
	}
	defer pool.Close()
	svc, err := paysvc.New(paysvc.Config{DB: pool, Faults: f, LockWait: *lockWait, Logger: log})
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: *addr, Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", *addr, "fail_before_charge", f.FailBeforeCharge, "drop_after_commit", f.DropAfterCommit,
		"slow", f.Slow, "slow_delay", f.SlowDelay, "decline", f.Decline, "notify_fail", f.NotifyFail, "seed", f.Seed)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
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

func migrate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ExitOnError)
	var db dbFlags
	db.register(fs)
	_ = fs.Parse(args)
	if err := db.check(); err != nil {
		return err
	}
	return paysvc.Migrate(ctx, cmp.Or(db.migrateURL, db.url))
}

func stats(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("stats", flag.ExitOnError)
	var db dbFlags
	db.register(fs)
	_ = fs.Parse(args)
	if err := db.check(); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, db.url)
	if err != nil {
		return err
	}
	defer pool.Close()
	st, err := paysvc.ReadStats(ctx, pool)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(st)
}

// envFloat reads a number from the environment; unset is 0, a bad value exits.
func envFloat(name string) float64 {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "payments: %s=%q: %v\n", name, v, err)
		os.Exit(2)
	}
	return f
}

func envUint(name string) uint64 {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "payments: %s=%q: %v\n", name, v, err)
		os.Exit(2)
	}
	return n
}

func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "payments: %s=%q: %v\n", name, v, err)
		os.Exit(2)
	}
	return d
}
