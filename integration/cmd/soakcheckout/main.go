// Command soakcheckout soaks the paid checkout in-process: order instances running POST
// /orders as a phased request (reserve, charge, confirm), a payment provider with its own
// database and every fault switched on (5xx before charging, charge then drop the answer, slow
// answers, declines, notification 5xx), and the outbox's delivery worker. Round after round
// for -duration, a third of the way into each round, one order instance is restarted with its
// connections cut and the delivery worker is killed mid-delivery. After each round the checker
// (examples/orders/loadgen, which reads both databases and shares no code with the toolkit)
// requires: no double charge, no orphan charge, every confirmed order charged and notified
// exactly once, no request left unfinished once the lease and the completer have run, exact
// stock. `make soak-checkout SOAK_DURATION=30s` runs it; it exits non-zero on any violation.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/pgonce/pgonce/examples/orders/loadgen"
	"github.com/pgonce/pgonce/integration/soak"
	"github.com/pgonce/pgonce/internal/pgtest"
)

func main() {
	duration := flag.Duration("duration", 60*time.Second, "how long to start new rounds")
	keys := flag.Int("keys", 40, "orders per round")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *duration, *keys); err != nil {
		fmt.Fprintln(os.Stderr, "soak-checkout:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, duration time.Duration, keys int) error {
	base := os.Getenv(pgtest.EnvDatabaseURL)
	if base == "" {
		return fmt.Errorf("%s is not set (make services)", pgtest.EnvDatabaseURL)
	}
	orders, dropOrders, err := pgtest.Create(ctx, base, fmt.Sprintf("sco_o%d", time.Now().UnixNano()%1e9), &pgtest.Options{NoMigrations: true})
	if err != nil {
		return err
	}
	defer dropOrders()
	payments, dropPayments, err := pgtest.Create(ctx, base, fmt.Sprintf("sco_p%d", time.Now().UnixNano()%1e9), &pgtest.Options{NoMigrations: true})
	if err != nil {
		return err
	}
	defer dropPayments()
	// Short schema names: River's LISTEN channels carry them, and PostgreSQL caps a channel
	// name at 63 bytes. Each round orders its own product, so the checker's stock and
	// charges are per round.
	const stock = 1000
	c, err := soak.StartCheckout(ctx, orders.URL, payments.URL, soak.CheckoutFaults, 2, "soak-r0", stock)
	if err != nil {
		return err
	}
	defer c.Close()

	start := time.Now()
	var total loadgen.CheckoutReport
	rounds, failed := 0, 0
	for time.Since(start) < duration && ctx.Err() == nil {
		rounds++
		round := rounds
		sku := fmt.Sprintf("soak-r%d", round)
		if err := c.Seed(ctx, sku, stock); err != nil {
			return err
		}
		rep, err := loadgen.Checkout(ctx, loadgen.CheckoutConfig{
			Targets: c.Targets, SKU: sku, InitialStock: stock, Keys: keys, SendsPerKey: 3, DeclineEvery: 10,
			GiveUpAfter: 5 * time.Second, Settle: 60 * time.Second, RunID: fmt.Sprintf("r%d", round),
			During: func() {
				if err := c.Restart(ctx, round%2); err != nil {
					fmt.Fprintln(os.Stderr, "soak-checkout: restart:", err)
				}
				if err := c.KillDelivery(ctx); err != nil {
					fmt.Fprintln(os.Stderr, "soak-checkout: kill delivery:", err)
				}
			},
		}, c.Orders, c.Payments)
		if err != nil {
			return err
		}
		if !rep.OK() {
			failed++
			fmt.Printf("round %d FAILED:\n%s", round, rep.Table())
		}
		add(&total, rep)
	}
	fmt.Printf("%d rounds of %d orders in %v (one instance restarted and the delivery worker killed mid-round, provider faults on):\n%s",
		rounds, keys, time.Since(start).Round(time.Second), total.Table())
	if failed > 0 {
		return fmt.Errorf("%d of %d rounds broke a promise", failed, rounds)
	}
	fmt.Println("every round: no double or orphan charge, one notification per confirmed order, nothing unfinished, stock exact")
	return nil
}

// add sums the counters of r into t (stock is per round: the last round's is kept).
func add(t *loadgen.CheckoutReport, r loadgen.CheckoutReport) {
	t.Sent += r.Sent
	t.Created += r.Created
	t.Replayed += r.Replayed
	t.Declined += r.Declined
	t.InProgress += r.InProgress
	t.Unfinished += r.Unfinished
	t.OutOfStock += r.OutOfStock
	t.Other += r.Other
	t.GaveUp += r.GaveUp
	t.Confirmed += r.Confirmed
	t.DeclinedOrders += r.DeclinedOrders
	t.Unsettled += r.Unsettled
	t.Charges += r.Charges
	t.DoubleCharges += r.DoubleCharges
	t.OrphanCharges += r.OrphanCharges
	t.MissingCharge += r.MissingCharge
	t.Notified += r.Notified
	t.DuplicateNotes += r.DuplicateNotes
	t.MissingNotes += r.MissingNotes
	t.NoteArrivals = r.NoteArrivals // the receiver's count is cumulative
	t.Resumed += r.Resumed
	t.FinalStock, t.ExpectedStock = r.FinalStock, r.ExpectedStock
	t.Duration += r.Duration
}
