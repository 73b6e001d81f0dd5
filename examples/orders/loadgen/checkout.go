package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CheckoutConfig describes a burst against the paid checkout (orders with a payment
// provider): every key is sent SendsPerKey times at once, and each sender retries until it
// gets a definite answer, as a real client would.
type CheckoutConfig struct {
	Targets      []string
	SKU          string
	InitialStock int
	// Keys distinct orders (default 100), each sent SendsPerKey times at once (default 3).
	Keys, SendsPerKey int
	// KeysInFlight bounds the keys being sent at a time; default 16.
	KeysInFlight int
	// DeclineEvery makes every n-th key pay with a card the provider always declines; 0 none.
	DeclineEvery int
	// GiveUpAfter is how long a sender retries before giving up on an answer (the request
	// then has to be finished by the completer); default 20s.
	GiveUpAfter time.Duration
	// Settle is how long Checkout waits, after the senders, for unfinished requests to be
	// completed and every notification to arrive; default 60s.
	Settle time.Duration
	// RunID makes the keys unique; default the current time.
	RunID string
	// Client sends the requests; default a client with a 10s timeout.
	Client *http.Client
	// During, when set, runs once a third of the keys have been sent (the demo kills an
	// instance there).
	During func()
}

// CheckoutReport is what the clients saw, and what the two databases hold afterwards.
type CheckoutReport struct {
	Sent                         int // requests sent, retries included
	Created, Replayed, Declined  int // 201 first executions, answers marked replayed, 402 answers
	InProgress, Unfinished       int // 409 in progress, 503 retry later (both retried)
	OutOfStock, Other, GaveUp    int // 409 out of stock, anything else, senders that gave up
	Confirmed, DeclinedOrders    int // orders by state, after settling
	Unsettled                    int // orders still reserved, or requests still running, after settling
	Charges, DoubleCharges       int // charge rows at the provider; references charged more than once
	OrphanCharges, MissingCharge int // charges with no confirmed order; confirmed orders without a charge
	Notified, DuplicateNotes     int // orders notified at the receiver; orders with more than one effect
	MissingNotes, NoteArrivals   int // confirmed orders never notified; deliveries that reached the receiver
	Resumed                      int // requests run more than once: resumed by a retry or taken over by the completer
	FinalStock, ExpectedStock    int
	Duration                     time.Duration
}

// OK reports whether the run is correct: nothing charged twice or without an order, every
// confirmed order charged and notified once, nothing left half-done, stock exact.
func (r CheckoutReport) OK() bool {
	return r.DoubleCharges == 0 && r.OrphanCharges == 0 && r.MissingCharge == 0 && r.DuplicateNotes == 0 &&
		r.MissingNotes == 0 && r.Unsettled == 0 && r.FinalStock == r.ExpectedStock && r.Other == 0
}

// Table renders the report as a Markdown table.
func (r CheckoutReport) Table() string {
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "| %-46s | %12v |\n", k, v) }
	fmt.Fprintf(&b, "| %-46s | %12s |\n|%s|%s|\n", "what", "count", strings.Repeat("-", 48), strings.Repeat("-", 14))
	row("requests sent (retries included)", r.Sent)
	row("201 first executions", r.Created)
	row("answers replayed (Idempotent-Replayed)", r.Replayed)
	row("402 payment declined", r.Declined)
	row("409 in progress / 503 unfinished (retried)", fmt.Sprintf("%d / %d", r.InProgress, r.Unfinished))
	row("409 out of stock", r.OutOfStock)
	row("other answers", r.Other)
	row("senders that gave up (completer finished)", r.GaveUp)
	row("requests resumed (retry or completer)", r.Resumed)
	row("orders confirmed / declined", fmt.Sprintf("%d / %d", r.Confirmed, r.DeclinedOrders))
	row("orders or requests left unfinished", r.Unsettled)
	row("charges at the provider", r.Charges)
	row("double charges", r.DoubleCharges)
	row("orphan charges (charged, no order)", r.OrphanCharges)
	row("confirmed orders without a charge", r.MissingCharge)
	row("notifications delivered (orders)", r.Notified)
	row("notifications duplicated at the receiver", r.DuplicateNotes)
	row("notifications lost", r.MissingNotes)
	row("deliveries that reached the receiver", r.NoteArrivals)
	row("final stock / expected", fmt.Sprintf("%d / %d", r.FinalStock, r.ExpectedStock))
	row("duration", r.Duration.Round(time.Millisecond))
	return b.String()
}

// Checkout runs the burst, waits for the system to settle, and checks both databases: orders
// (the service's) and payments (the provider's, which also holds the notification receiver).
func Checkout(ctx context.Context, cfg CheckoutConfig, orders, payments *pgxpool.Pool) (CheckoutReport, error) {
	if cfg.Keys <= 0 {
		cfg.Keys = 100
	}
	if cfg.SendsPerKey <= 0 {
		cfg.SendsPerKey = 3
	}
	if cfg.KeysInFlight <= 0 {
		cfg.KeysInFlight = 16
	}
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = 20 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 60 * time.Second
	}
	if cfg.RunID == "" {
		cfg.RunID = time.Now().UTC().Format("20060102T150405.000000")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	var rep CheckoutReport
	var mu sync.Mutex
	start := time.Now()
	sem := make(chan struct{}, cfg.KeysInFlight)
	var wg sync.WaitGroup
	for k := 0; k < cfg.Keys; k++ {
		if k == cfg.Keys/3 && cfg.During != nil {
			cfg.During()
		}
		sem <- struct{}{}
		key := fmt.Sprintf("checkout-%s-%d", cfg.RunID, k)
		b := body{CustomerID: fmt.Sprintf("c%d", k%7), SKU: cfg.SKU, Quantity: 1 + k%3}
		if cfg.DeclineEvery > 0 && k%cfg.DeclineEvery == 0 {
			b.Card = "tok_chargeDeclined"
		}
		var kw sync.WaitGroup
		for s := 0; s < cfg.SendsPerKey; s++ {
			kw.Add(1)
			target := cfg.Targets[(k+s)%len(cfg.Targets)]
			go func() {
				defer kw.Done()
				sendUntilDefinite(ctx, cfg, target, key, b, &rep, &mu)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			kw.Wait()
			<-sem
		}()
	}
	wg.Wait()
	if err := settle(ctx, cfg.Settle, orders, payments); err != nil {
		return rep, err
	}
	rep.Duration = time.Since(start)
	return rep, checkCheckout(ctx, cfg, orders, payments, &rep)
}

// sendUntilDefinite sends one key's request until a definite answer or GiveUpAfter.
func sendUntilDefinite(ctx context.Context, cfg CheckoutConfig, target, key string, b body, rep *CheckoutReport, mu *sync.Mutex) {
	deadline := time.Now().Add(cfg.GiveUpAfter)
	for {
		a := send(ctx, cfg.Client, target, key, b)
		status, replayed, problem, err := a.status, a.replayed, a.problem, a.err
		mu.Lock()
		rep.Sent++
		definite := true
		switch {
		case err != nil || status == http.StatusServiceUnavailable || status == http.StatusBadGateway:
			rep.Unfinished++ // transport errors too: the instance may have died mid-request
			definite = false
		case status == http.StatusConflict && strings.HasSuffix(problem, "idempotency-key-in-progress"):
			rep.InProgress++
			definite = false
		case status == http.StatusConflict:
			rep.OutOfStock++
		case status == http.StatusCreated && !replayed:
			rep.Created++
		case status == http.StatusPaymentRequired:
			rep.Declined++
		case status != http.StatusCreated:
			rep.Other++
		}
		if replayed {
			rep.Replayed++
		}
		if !definite && time.Now().After(deadline) {
			rep.GaveUp++
			definite = true
		}
		mu.Unlock()
		if definite || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// settle waits until no checkout request is running and every confirmed order has reached
// the receiver, or the time runs out (the check then reports what is missing).
func settle(ctx context.Context, wait time.Duration, orders, payments *pgxpool.Pool) error {
	deadline := time.Now().Add(wait)
	for {
		var running, confirmed, notified int
		if err := orders.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM flow_requests WHERE state = 'running'),
			(SELECT count(*) FROM orders WHERE status = 'confirmed' AND amount_cents IS NOT NULL)`).Scan(&running, &confirmed); err != nil {
			return err
		}
		if err := payments.QueryRow(ctx, `SELECT count(DISTINCT order_ref) FROM notifications`).Scan(&notified); err != nil {
			return err
		}
		if (running == 0 && notified >= confirmed) || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// checkCheckout reads both databases. It shares no code with the service: it joins the provider's
// charges and the receiver's notifications to the orders by reference ("order-<id>").
func checkCheckout(ctx context.Context, cfg CheckoutConfig, orders, payments *pgxpool.Pool, rep *CheckoutReport) error {
	type order struct {
		status string
		charge *string
		qty    int
	}
	byRef := map[string]order{}
	rows, err := orders.Query(ctx, `SELECT id, status, charge_id, quantity FROM orders WHERE sku = $1 AND amount_cents IS NOT NULL`, cfg.SKU)
	if err != nil {
		return err
	}
	sold := 0
	for rows.Next() {
		var id int64
		var o order
		if err := rows.Scan(&id, &o.status, &o.charge, &o.qty); err != nil {
			rows.Close()
			return err
		}
		byRef[fmt.Sprintf("order-%d", id)] = o
		switch o.status {
		case "confirmed":
			rep.Confirmed++
			sold += o.qty
		case "declined":
			rep.DeclinedOrders++
		default:
			rep.Unsettled++
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var running int
	if err := orders.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state <> 'finished'), count(*) FILTER (WHERE attempts > 1)
		FROM flow_requests WHERE key LIKE 'checkout-' || $1 || '-%'`, cfg.RunID).Scan(&running, &rep.Resumed); err != nil {
		return err
	}
	rep.Unsettled += running
	if err := orders.QueryRow(ctx, `SELECT stock FROM products WHERE sku = $1`, cfg.SKU).Scan(&rep.FinalStock); err != nil {
		return err
	}
	rep.ExpectedStock = cfg.InitialStock - sold

	charges, err := countBy(ctx, payments, `SELECT reference, count(*) FROM charges GROUP BY reference`)
	if err != nil {
		return err
	}
	notes, err := countBy(ctx, payments, `SELECT order_ref, count(*) FROM notifications GROUP BY order_ref`)
	if err != nil {
		return err
	}
	if err := payments.QueryRow(ctx, `SELECT count(*) FROM notification_arrivals`).Scan(&rep.NoteArrivals); err != nil {
		return err
	}
	for ref, n := range charges {
		o, ok := byRef[ref]
		if !ok {
			continue // another run's order
		}
		rep.Charges += n
		if n > 1 {
			rep.DoubleCharges++
		}
		if o.status != "confirmed" {
			rep.OrphanCharges++
		}
	}
	for ref, o := range byRef {
		if o.status != "confirmed" {
			continue
		}
		if charges[ref] == 0 {
			rep.MissingCharge++
		}
		switch n := notes[ref]; {
		case n == 0:
			rep.MissingNotes++
		case n > 1:
			rep.DuplicateNotes++
			rep.Notified++
		default:
			rep.Notified++
		}
	}
	return nil
}

// countBy runs a query of (text, count) rows and returns them as a map.
func countBy(ctx context.Context, pool *pgxpool.Pool, sql string) (map[string]int, error) {
	rows, err := pool.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}
