package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/examples/orders/loadgen"
	"github.com/pgonce/pgonce/examples/orders/ordersvc"
	"github.com/pgonce/pgonce/integration/harness"
)

// startOrders runs n instances of the order service in-process on cfg.DatabaseURL.
func startOrders(t *testing.T, cfg ordersvc.Config, n int) ([]*ordersvc.Service, []string) {
	t.Helper()
	// Warnings (Redis calls that failed or timed out) go to the test's output.
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	var svcs []*ordersvc.Service
	var urls []string
	for i := range n {
		cfg.Instance = "instance-" + string(rune('a'+i))
		svc, err := ordersvc.Open(context.Background(), cfg)
		require.NoError(t, err)
		srv := httptest.NewServer(svc.Handler())
		t.Cleanup(func() { srv.Close(); svc.Close() })
		svcs = append(svcs, svc)
		urls = append(urls, srv.URL)
	}
	return svcs, urls
}

// The demo's burst, in-process: 100 keys, each sent 5 times at once across two instances,
// then retried, then 5 reused with a changed body. PostgreSQL must show one order per key
// and exact stock.
func TestOrdersEndToEnd(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	svcs, urls := startOrders(t, ordersvc.Config{DatabaseURL: db.URL}, 2)
	ctx := context.Background()
	require.NoError(t, svcs[0].Seed(ctx, "widget", "Widget", 1000))

	rep, err := loadgen.Run(ctx, loadgen.Config{Targets: urls, SKU: "widget", InitialStock: 1000, Keys: 100, SendsPerKey: 5, Mismatches: 5}, db.Pool)
	require.NoError(t, err)
	t.Logf("\n%s", rep.Table())
	assert.True(t, rep.OK(), "no duplicates, exact stock")
	assert.Equal(t, 100+100*5+5, rep.Sent)
	assert.Equal(t, 100, rep.Created, "one first execution per key")
	assert.Equal(t, 100, rep.OrdersInDB)
	assert.Equal(t, 5, rep.Mismatch)
	assert.GreaterOrEqual(t, rep.Replayed, 100, "every retry in the second pass replays")
	assert.Zero(t, rep.DuplicatedKeys)
	assert.Equal(t, 1000-(34*1+33*2+33*3), rep.FinalStock)
}

// The same burst behind PgBouncer in transaction pooling: the service's pool in exec mode
// through the pooler, its migrations on the direct URL.
func TestOrdersEndToEndPgBouncer(t *testing.T) {
	t.Parallel()
	db := harness.PooledDB(t, nil)
	svcs, urls := startOrders(t, ordersvc.Config{DatabaseURL: withQueryMode(t, db.URL, "exec"), MigrateURL: db.DirectURL}, 2)
	ctx := context.Background()
	require.NoError(t, svcs[0].Seed(ctx, "widget", "Widget", 1000))

	rep, err := loadgen.Run(ctx, loadgen.Config{Targets: urls, SKU: "widget", InitialStock: 1000, Keys: 100, SendsPerKey: 5, Mismatches: 5}, db.Pool)
	require.NoError(t, err)
	t.Logf("\n%s", rep.Table())
	assert.True(t, rep.OK(), "no duplicates, exact stock")
	assert.Equal(t, 100, rep.Created, "one first execution per key")
	assert.Equal(t, 100, rep.OrdersInDB)
	assert.Equal(t, 5, rep.Mismatch)
	assert.Zero(t, rep.Other, "no 5xx or transport errors")
	assert.Zero(t, rep.DuplicatedKeys)
	assert.Equal(t, 1000-(34*1+33*2+33*3), rep.FinalStock)
}

// The same burst with the Redis guard in front: in-flight duplicates are turned away with 409
// by Redis, retries replay from Redis, and PostgreSQL still holds one order per key.
func TestOrdersEndToEndWithRedis(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	prefix := harness.Prefix(t)
	// A generous Redis timeout: under -race on a loaded CI machine the default 100ms can
	// expire; the guard then fails open (still no duplicate), but a timed-out commit leaves
	// its mark "in progress" and a later mismatch would get 409 instead of the 422 counted
	// below. Timeouts have their own fault tests.
	cfg := ordersvc.Config{DatabaseURL: db.URL, RedisURL: harness.RedisURL(t), RedisPrefix: prefix, RedisTimeout: 5 * time.Second}
	svcs, urls := startOrders(t, cfg, 2)
	ctx := context.Background()
	require.NoError(t, svcs[0].Seed(ctx, "widget", "Widget", 1000))
	rep, err := loadgen.Run(ctx, loadgen.Config{Targets: urls, SKU: "widget", InitialStock: 1000, Keys: 100, SendsPerKey: 5, Mismatches: 5, RunID: prefix}, db.Pool)
	require.NoError(t, err)
	t.Logf("\n%s", rep.Table())
	assert.True(t, rep.OK(), "no duplicates, exact stock")
	assert.Equal(t, 100, rep.Created)
	assert.Equal(t, 100, rep.OrdersInDB)
	assert.Equal(t, 5, rep.Mismatch)
	assert.Equal(t, 100+100*5+5, rep.Created+rep.Replayed+rep.InProgress+rep.Mismatch)
}

// Two instances start the same day's report at once: one builds it, and every customer gets
// exactly one summary, even when the job runs again.
func TestOrdersReportRunsOnce(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	svcs, urls := startOrders(t, ordersvc.Config{DatabaseURL: db.URL}, 2)
	ctx := context.Background()
	require.NoError(t, svcs[0].Seed(ctx, "gadget", "Gadget", 500))
	rep, err := loadgen.Run(ctx, loadgen.Config{Targets: urls, SKU: "gadget", InitialStock: 500, Keys: 40, SendsPerKey: 2, Mismatches: -1}, db.Pool)
	require.NoError(t, err)
	require.True(t, rep.OK())

	today := time.Now().UTC()
	var wg sync.WaitGroup
	results := make([]ordersvc.ReportResult, 2)
	start := make(chan struct{})
	for i := range svcs {
		wg.Go(func() {
			<-start
			var err error
			results[i], err = svcs[i].RunReport(ctx, today)
			assert.NoError(t, err)
		})
	}
	close(start)
	wg.Wait()
	built := 0
	for _, r := range results {
		if r.Outcome == "built" {
			built++
		}
	}
	assert.Equal(t, 1, built, "exactly one instance built the report: %+v", results)
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM daily_reports`))
	assert.Equal(t, 40, count(t, db.Pool, `SELECT orders FROM daily_reports`))
	assert.Equal(t, 20, count(t, db.Pool, `SELECT count(*) FROM outbox WHERE kind = 'daily-summary'`), "one summary per customer")

	again, err := svcs[1].RunReport(ctx, today)
	require.NoError(t, err)
	assert.Equal(t, "already built", again.Outcome)
	assert.Zero(t, again.SummariesSent)
	assert.Equal(t, 20, count(t, db.Pool, `SELECT count(*) FROM outbox`))
}

// A NUL character, which no PostgreSQL text value can hold, is refused as an invalid order
// (400 with a detail), and nothing changes; a product path that cannot be text is not found.
func TestOrdersRefuseTextPostgreSQLCannotStore(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	svcs, urls := startOrders(t, ordersvc.Config{DatabaseURL: db.URL}, 1)
	ctx := context.Background()
	require.NoError(t, svcs[0].Seed(ctx, "widget", "Widget", 10))

	for i, body := range []string{
		`{"customer_id":"c\u00001","sku":"widget","quantity":1}`,
		`{"customer_id":"c1","sku":"wid\u0000get","quantity":1}`,
	} {
		req, err := http.NewRequestWithContext(ctx, "POST", urls[0]+"/orders", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("nul-%d", i))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var p struct{ Type, Detail string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		assert.Equal(t, ordersvc.ProblemInvalidOrder, p.Type, body)
		assert.Contains(t, p.Detail, "NUL", body)
	}
	for _, sku := range []string{"wid%00get", "%ff"} {
		resp, err := http.Get(urls[0] + "/products/" + sku)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, sku)
	}
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM orders`))
	assert.Equal(t, 10, count(t, db.Pool, `SELECT stock FROM products WHERE sku = 'widget'`))
}
