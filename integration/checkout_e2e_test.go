package integration_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/delivery"
	"github.com/pgonce/pgonce/examples/orders/loadgen"
	"github.com/pgonce/pgonce/examples/orders/ordersvc"
	"github.com/pgonce/pgonce/examples/payments/payclient"
	"github.com/pgonce/pgonce/examples/payments/paysvc"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// The paid checkout end to end, in-process: two order instances on one database, a payment
// provider on its own with every fault switched on, and the order-confirmed notifications
// delivered through the outbox to the provider's receiver. Both databases must show no
// double charge, no orphan charge, one notification per confirmed order, exact stock.
func TestCheckoutEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	orders := harness.DB(t, &pgtest.Options{MaxConns: 32})
	payDB, drop, err := pgtest.Create(ctx, harness.PostgresURL(t), t.Name()+"_payments", &pgtest.Options{NoMigrations: true, MaxConns: 32})
	require.NoError(t, err)
	t.Cleanup(drop)

	require.NoError(t, paysvc.Migrate(ctx, payDB.URL))
	provider, err := paysvc.New(paysvc.Config{DB: payDB.Pool, Faults: paysvc.Faults{
		FailBeforeCharge: 0.1, DropAfterCommit: 0.1, Slow: 0.05, SlowDelay: 1500 * time.Millisecond,
		Decline: 0.05, NotifyFail: 0.1, Seed: 42,
	}})
	require.NoError(t, err)
	paySrv := httptest.NewServer(provider.Handler())
	t.Cleanup(paySrv.Close)

	require.NoError(t, delivery.Migrate(ctx, orders.Pool, nil))
	dc, err := delivery.New(orders.Pool, &delivery.Config{Workers: 8})
	require.NoError(t, err)
	require.NoError(t, dc.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = dc.Stop(sctx)
	})
	pc, err := payclient.New(payclient.Config{BaseURL: paySrv.URL, Timeout: time.Second,
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}})
	require.NoError(t, err)
	notifyURL := paySrv.URL + "/notifications"
	svcs, urls := startOrders(t, ordersvc.Config{
		DatabaseURL: orders.URL, Payments: pc, Lease: time.Second, CompleteEvery: 200 * time.Millisecond,
		Notify: func(ctx context.Context, tx pgx.Tx, key string, body []byte) error {
			return dc.EnqueueTx(ctx, tx, delivery.Message{URL: notifyURL, Key: key, Body: body})
		},
	}, 2)
	require.NoError(t, svcs[0].Seed(ctx, "gadget", "Gadget", 1000))

	rep, err := loadgen.Checkout(ctx, loadgen.CheckoutConfig{Targets: urls, SKU: "gadget", InitialStock: 1000,
		Keys: 60, SendsPerKey: 3, DeclineEvery: 10, Settle: 90 * time.Second}, orders.Pool, payDB.Pool)
	require.NoError(t, err)
	t.Logf("\n%s", rep.Table())
	assert.True(t, rep.OK())
	assert.Zero(t, rep.DoubleCharges)
	assert.Zero(t, rep.OrphanCharges)
	assert.Zero(t, rep.DuplicateNotes)
	assert.Zero(t, rep.MissingNotes)
	assert.Zero(t, rep.Unsettled)
	assert.Equal(t, 60, rep.Confirmed+rep.DeclinedOrders, "every order ended definite")
	assert.GreaterOrEqual(t, rep.DeclinedOrders, 6, "every tenth card is declined")
	assert.Equal(t, rep.Confirmed, rep.Charges, "one charge per confirmed order")
	assert.Equal(t, rep.Confirmed, rep.Notified)
}
