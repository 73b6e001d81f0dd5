package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/delivery"
	"github.com/pgonce/pgonce/examples/orders/loadgen"
	"github.com/pgonce/pgonce/examples/orders/ordersvc"
	"github.com/pgonce/pgonce/examples/payments/payclient"
	"github.com/pgonce/pgonce/pessimistic"
)

// paidCheckout fills cfg for the paid checkout: a payment client, and, with notifyURL, the
// delivery outbox (River, in the orders database) that the confirm step enqueues into. It
// returns the function that stops delivery.
func paidCheckout(ctx context.Context, cfg *ordersvc.Config, paymentsURL, notifyURL string, lease time.Duration) (stop func(), err error) {
	// No keep-alives: a dropped answer then reaches the flow as the unknown outcome it is,
	// instead of being re-sent by net/http on a fresh connection (safe, with the same key,
	// but it would hide the fault the demo injects).
	pc, err := payclient.New(payclient.Config{BaseURL: paymentsURL, Timeout: 2 * time.Second,
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}})
	if err != nil {
		return nil, err
	}
	cfg.Payments, cfg.Lease = pc, lease
	if notifyURL == "" {
		return func() {}, nil
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	// River's migrator takes no lock: instances starting together take turns on a session
	// advisory lock (the migrate URL is a direct connection).
	mpool, err := pgxpool.New(ctx, cmp.Or(cfg.MigrateURL, cfg.DatabaseURL))
	if err != nil {
		pool.Close()
		return nil, err
	}
	err = pessimistic.WithSessionLock(ctx, mpool, pessimistic.AdvisoryKey("orders:delivery-migrate"), func(ctx context.Context, _ *pgx.Conn) error {
		return delivery.Migrate(ctx, mpool, nil)
	})
	mpool.Close()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("delivery migrations: %w", err)
	}
	// A SIGKILLed instance leaves the deliveries it held running; River's rescuer hands them
	// to another instance after RescueAfter, which must outlast the longest delivery.
	dc, err := delivery.New(pool, &delivery.Config{Workers: 8, RequestTimeout: 5 * time.Second, RescueAfter: 15 * time.Second})
	if err != nil {
		pool.Close()
		return nil, err
	}
	if err := dc.Start(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	cfg.Notify = func(ctx context.Context, tx pgx.Tx, key string, body []byte) error {
		return dc.EnqueueTx(ctx, tx, delivery.Message{URL: notifyURL, Key: key, Body: body,
			Header: http.Header{"Content-Type": {"application/json"}}})
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = dc.Stop(sctx)
		pool.Close()
	}, nil
}

func checkout(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("checkout", flag.ExitOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "the orders PostgreSQL URL (env DATABASE_URL)")
	payURL := fs.String("payments-database-url", os.Getenv("PAYMENTS_DATABASE_URL"), "the provider's PostgreSQL URL (env PAYMENTS_DATABASE_URL)")
	targets := fs.String("targets", "http://127.0.0.1:8080", "comma-separated base URLs of the instances")
	during := fs.String("during", "", "shell command run once a third of the keys are sent (the demo kills an instance)")
	var cfg loadgen.CheckoutConfig
	fs.StringVar(&cfg.SKU, "sku", "", "product to order (required; seed it first)")
	fs.IntVar(&cfg.InitialStock, "stock", 0, "the product's stock before the burst")
	fs.IntVar(&cfg.Keys, "keys", 100, "distinct orders")
	fs.IntVar(&cfg.SendsPerKey, "sends", 3, "concurrent sends of each order")
	fs.IntVar(&cfg.DeclineEvery, "decline-every", 10, "every n-th order pays with a card that is always declined (0: none)")
	fs.DurationVar(&cfg.Settle, "settle", 60*time.Second, "how long to wait for the completer and deliveries afterwards")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the targets' /healthz")
	_ = fs.Parse(args)
	cfg.Targets = strings.Split(*targets, ",")
	if *during != "" {
		cfg.During = func() {
			cmd := exec.CommandContext(ctx, "sh", "-c", *during)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "checkout: -during:", err)
			}
		}
	}
	if err := waitReady(ctx, *wait, cfg.Targets); err != nil {
		return err
	}
	orders, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer orders.Close()
	payments, err := pgxpool.New(ctx, *payURL)
	if err != nil {
		return err
	}
	defer payments.Close()
	rep, err := loadgen.Checkout(ctx, cfg, orders, payments)
	if err != nil {
		return err
	}
	fmt.Print(rep.Table())
	if !rep.OK() {
		return errors.New("checkout: a double or orphan charge, a lost or duplicated notification, unfinished work or wrong stock")
	}
	fmt.Println("exactly once: no double charge, no orphan charge, one notification per confirmed order, stock exact")
	return nil
}
