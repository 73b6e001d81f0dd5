package paysvc_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/examples/payments/payclient"
	"github.com/pgonce/pgonce/examples/payments/paysvc"
)

// Go's http.Transport re-sends a request carrying an Idempotency-Key when a reused keep-alive
// connection closes before any answer: a dropped answer never reaches a caller that reuses
// connections, which gets the replay instead. Safe (the key is the same), but it hides the
// drop fault from the caller; the provider's FaultCounts still shows it. This test pins the
// behaviour so a change in net/http is noticed.
func TestKeepAliveClientResendsDroppedCharge(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{Faults: paysvc.Faults{
		Decide: onArrival(paysvc.RouteCharges, 2, paysvc.Decision{Drop: true}),
	}})
	c, err := payclient.New(payclient.Config{BaseURL: p.url, HTTPClient: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 1}}})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = c.Charge(ctx, "k0", payclient.ChargeRequest{Amount: 1, Currency: "usd", Card: "tok_visa", Reference: "order-0"})
	require.NoError(t, err, "arrival 1 opens the connection")
	ch, err := c.Charge(ctx, "k1", payclient.ChargeRequest{Amount: 1, Currency: "usd", Card: "tok_visa", Reference: "order-1"})
	require.NoError(t, err, "arrival 2 is dropped on the reused connection; net/http re-sends it (arrival 3)")
	assert.True(t, ch.Replayed)
	assert.Equal(t, paysvc.FaultCounts{ChargeArrivals: 3, Dropped: 1}, p.svc.FaultCounts())
	assert.Equal(t, paysvc.Stats{Charges: 2, ChargedReferences: 2}, p.stats(t))
}
