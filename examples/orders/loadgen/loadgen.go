// Package loadgen fires a burst of duplicated POST /orders requests at one or more order
// service instances and checks, in PostgreSQL, that every key created exactly one order and
// that stock moved by exactly what was sold. `make demo` runs it; so does the end-to-end test.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config describes one burst.
type Config struct {
	// Targets are the base URLs of the instances (http://127.0.0.1:8081).
	Targets []string
	// SKU is the product to order; it must exist with InitialStock units.
	SKU          string
	InitialStock int
	// Keys distinct idempotency keys are used; each is sent SendsPerKey times at once,
	// spread over the targets. Defaults 100 and 5.
	Keys        int
	SendsPerKey int
	// KeysInFlight bounds how many keys are being sent at a time; default 16.
	KeysInFlight int
	// Mismatches keys are sent once more afterwards with a changed body (expect 422);
	// default 5.
	Mismatches int
	// RunID makes the keys of this run unique; default the current time.
	RunID string
	// Client sends the requests; default a client with a 30s timeout.
	Client *http.Client
}

// Report counts what the burst saw and what PostgreSQL holds afterwards.
type Report struct {
	Sent           int // requests sent, all phases
	Created        int // 201 answers that were first executions
	Replayed       int // answers with Idempotent-Replayed: true
	InProgress     int // 409 idempotency-key-in-progress
	Mismatch       int // 422 idempotency-key-mismatch
	Other          int // anything else (transport errors, 5xx)
	OrdersInDB     int // orders for SKU in PostgreSQL
	DistinctKeys   int // distinct keys among them
	DuplicatedKeys int // keys with more than one order
	SplitAnswers   int // keys whose successful answers named different orders
	FinalStock     int
	ExpectedStock  int
	Duration       time.Duration
}

// OK reports whether the run is correct: no duplicate, no split answer, every key created
// its order, stock exact.
func (r Report) OK() bool {
	return r.DuplicatedKeys == 0 && r.SplitAnswers == 0 && r.OrdersInDB == r.DistinctKeys &&
		r.FinalStock == r.ExpectedStock && r.Other == 0
}

// Table renders the report as a Markdown table.
func (r Report) Table() string {
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "| %-38s | %12v |\n", k, v) }
	fmt.Fprintf(&b, "| %-38s | %12s |\n|%s|%s|\n", "what", "count", strings.Repeat("-", 40), strings.Repeat("-", 14))
	row("requests sent", r.Sent)
	row("first executions (201)", r.Created)
	row("replays (Idempotent-Replayed: true)", r.Replayed)
	row("409 in progress (retried later)", r.InProgress)
	row("422 key reused with another body", r.Mismatch)
	row("other answers / errors", r.Other)
	row("orders in PostgreSQL", r.OrdersInDB)
	row("distinct keys among them", r.DistinctKeys)
	row("keys with more than one order", r.DuplicatedKeys)
	row("keys answered with different orders", r.SplitAnswers)
	row("final stock / expected", fmt.Sprintf("%d / %d", r.FinalStock, r.ExpectedStock))
	row("duration", r.Duration.Round(time.Millisecond))
	return b.String()
}

type body struct {
	CustomerID string `json:"customer_id"`
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	Card       string `json:"card,omitempty"` // the paid checkout's payment token
}

type answer struct {
	status   int
	replayed bool
	problem  string
	orderID  int64
	err      error
}

// WaitReady polls GET /healthz on every target until all answer 200 or ctx ends.
func WaitReady(ctx context.Context, c *http.Client, targets []string) error {
	for _, t := range targets {
		for {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(t, "/")+"/healthz", nil)
			if err != nil {
				return err
			}
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("loadgen: %s not ready: %w", t, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// Run sends the burst, then a retry pass (one more request per key, which must be a replay
// of that key's order), then the mismatches, and finally reads PostgreSQL through pool.
func Run(ctx context.Context, cfg Config, pool *pgxpool.Pool) (Report, error) {
	if len(cfg.Targets) == 0 || cfg.SKU == "" || pool == nil {
		return Report{}, errors.New("loadgen: Targets, SKU and a pool are required")
	}
	if cfg.Keys <= 0 {
		cfg.Keys = 100
	}
	if cfg.SendsPerKey <= 0 {
		cfg.SendsPerKey = 5
	}
	if cfg.KeysInFlight <= 0 {
		cfg.KeysInFlight = 16
	}
	if cfg.Mismatches == 0 {
		cfg.Mismatches = 5
	}
	if cfg.RunID == "" {
		cfg.RunID = time.Now().UTC().Format("20060102T150405.000")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	start := time.Now()
	var rep Report
	var mu sync.Mutex
	orders := map[string]map[int64]bool{} // key -> order ids named by successful answers
	record := func(key string, a answer) {
		mu.Lock()
		defer mu.Unlock()
		rep.Sent++
		switch {
		case a.err != nil:
			rep.Other++
		case a.replayed:
			rep.Replayed++
		case a.status == http.StatusCreated:
			rep.Created++
		case a.status == http.StatusConflict && strings.HasSuffix(a.problem, "idempotency-key-in-progress"):
			rep.InProgress++
		case a.status == http.StatusUnprocessableEntity && strings.HasSuffix(a.problem, "idempotency-key-mismatch"):
			rep.Mismatch++
		default:
			rep.Other++
		}
		if a.err == nil && a.status == http.StatusCreated {
			if orders[key] == nil {
				orders[key] = map[int64]bool{}
			}
			orders[key][a.orderID] = true
		}
	}
	keyName := func(k int) string { return fmt.Sprintf("demo-%s-%03d", cfg.RunID, k) }
	bodyOf := func(k int) body {
		return body{CustomerID: fmt.Sprintf("customer-%02d", k%20), SKU: cfg.SKU, Quantity: 1 + k%3}
	}

	// Phase 1: every key sent SendsPerKey times at once, round-robin over the targets.
	sem := make(chan struct{}, cfg.KeysInFlight)
	var wg sync.WaitGroup
	for k := range cfg.Keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			release := make(chan struct{})
			var sends sync.WaitGroup
			for i := range cfg.SendsPerKey {
				sends.Go(func() {
					<-release
					record(keyName(k), send(ctx, cfg.Client, cfg.Targets[(k+i)%len(cfg.Targets)], keyName(k), bodyOf(k)))
				})
			}
			close(release)
			sends.Wait()
		})
	}
	wg.Wait()

	// Phase 2: a client that got 409 (or timed out) retries; every key now answers with its
	// one order, replayed.
	for k := range cfg.Keys {
		record(keyName(k), send(ctx, cfg.Client, cfg.Targets[k%len(cfg.Targets)], keyName(k), bodyOf(k)))
	}
	// Phase 3: keys reused with a changed body are refused.
	for k := range min(cfg.Mismatches, cfg.Keys) {
		b := bodyOf(k)
		b.Quantity += 7
		record(keyName(k), send(ctx, cfg.Client, cfg.Targets[(k+1)%len(cfg.Targets)], keyName(k), b))
	}
	rep.Duration = time.Since(start)

	for _, ids := range orders {
		if len(ids) > 1 {
			rep.SplitAnswers++
		}
	}
	expected := cfg.InitialStock
	for k := range cfg.Keys {
		if len(orders[keyName(k)]) > 0 {
			expected -= bodyOf(k).Quantity
		}
	}
	rep.ExpectedStock = expected
	err := check(ctx, pool, cfg.SKU, "demo-"+cfg.RunID+"-%", &rep)
	return rep, err
}

func send(ctx context.Context, c *http.Client, target, key string, b body) answer {
	payload, _ := json.Marshal(b)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(target, "/")+"/orders", bytes.NewReader(payload))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true", err: err}
	var parsed struct {
		ID   int64  `json:"id"`
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &parsed)
	a.orderID, a.problem = parsed.ID, parsed.Type
	return a
}

// check reads what PostgreSQL holds for this run: it trusts no answer the service gave.
func check(ctx context.Context, pool *pgxpool.Pool, sku, keyPattern string, rep *Report) error {
	err := pool.QueryRow(ctx, `WITH run AS (
			SELECT idempotency_key, count(*) AS n FROM orders
			WHERE sku = $1 AND idempotency_key LIKE $2 GROUP BY idempotency_key
		)
		SELECT coalesce(sum(n), 0), count(*), count(*) FILTER (WHERE n > 1) FROM run`, sku, keyPattern).
		Scan(&rep.OrdersInDB, &rep.DistinctKeys, &rep.DuplicatedKeys)
	if err != nil {
		return fmt.Errorf("loadgen: count orders: %w", err)
	}
	if err := pool.QueryRow(ctx, `SELECT stock FROM products WHERE sku = $1`, sku).Scan(&rep.FinalStock); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("loadgen: product %q does not exist", sku)
		}
		return fmt.Errorf("loadgen: read stock: %w", err)
	}
	return nil
}
