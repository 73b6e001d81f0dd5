package paysvc_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/examples/payments/paysvc"
	"github.com/pgonce/pgonce/internal/pgtest"
)

func TestChargeOnceAndReplay(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{})
	first, err := p.post(t, "/charges", "k1", charge("order-1"))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, first.status, "%s", first.body)
	c := decode[paysvc.Charge](t, first)
	assert.Regexp(t, `^ch_[0-9a-f]{24}$`, c.ID)
	assert.Equal(t, paysvc.Charge{ID: c.ID, Amount: 1999, Currency: "usd", Reference: "order-1", Status: "succeeded", CreatedAt: c.CreatedAt}, c)
	assert.False(t, first.replayed)

	again, err := p.post(t, "/charges", "k1", charge("order-1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, again.status)
	assert.True(t, again.replayed)
	assert.Equal(t, first.body, again.body, "a retry gets the first answer byte for byte")
	assert.Equal(t, 1, p.count(t, `SELECT count(*) FROM charges WHERE reference = 'order-1' AND idempotency_key = 'k1'`))

	// The same key with another body is a different request: 422, nothing charged.
	other, err := p.post(t, "/charges", "k1", charge("order-2"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnprocessableEntity, other.status)
	assert.Equal(t, paysvc.Stats{Charges: 1, ChargedReferences: 1}, p.stats(t))
}

func TestChargeInvalidInput(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{})
	for _, tc := range []struct {
		name string
		body any
	}{
		{"zero amount", paysvc.ChargeRequest{Amount: 0, Currency: "usd", Card: "tok_visa", Reference: "r"}},
		{"amount too large", paysvc.ChargeRequest{Amount: paysvc.MaxAmount + 1, Currency: "usd", Card: "tok_visa", Reference: "r"}},
		{"upper-case currency", paysvc.ChargeRequest{Amount: 1, Currency: "USD", Card: "tok_visa", Reference: "r"}},
		{"card not a token", paysvc.ChargeRequest{Amount: 1, Currency: "usd", Card: "4242424242424242", Reference: "r"}},
		{"no reference", paysvc.ChargeRequest{Amount: 1, Currency: "usd", Card: "tok_visa"}},
		{"NUL in reference", paysvc.ChargeRequest{Amount: 1, Currency: "usd", Card: "tok_visa", Reference: "a\x00b"}},
		{"unknown field", []byte(`{"amount":1,"currency":"usd","card":"tok_visa","reference":"r","tip":5}`)},
		{"two objects", []byte(`{"amount":1,"currency":"usd","card":"tok_visa","reference":"r"} {}`)},
		{"not JSON", []byte(`amount=1`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := p.post(t, "/charges", "bad-"+strings.ReplaceAll(tc.name, " ", "-"), tc.body)
			require.NoError(t, err)
			assert.Equal(t, http.StatusBadRequest, a.status, "%s", a.body)
			assert.Equal(t, "application/problem+json", a.ctype)
			assert.Contains(t, string(a.body), paysvc.ProblemInvalidCharge)
		})
	}
	noKey, err := p.post(t, "/charges", "", charge("r"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, noKey.status)
	assert.Equal(t, paysvc.Stats{}, p.stats(t))
}

func TestChargeDeclineIsStoredAndReplayed(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{Faults: paysvc.Faults{
		Decide: onArrival(paysvc.RouteCharges, 5, paysvc.Decision{Decline: true}),
	}})
	for _, tc := range []struct {
		key, card, code string
	}{
		{"k-declined", paysvc.CardDeclined, paysvc.DeclineGeneric},                        // arrivals 1, 2
		{"k-insufficient", paysvc.CardInsufficientFunds, paysvc.DeclineInsufficientFunds}, // 3, 4
	} {
		req := charge("order-" + tc.key)
		req.Card = tc.card
		first, err := p.post(t, "/charges", tc.key, req)
		require.NoError(t, err)
		require.Equal(t, http.StatusPaymentRequired, first.status, "%s", first.body)
		d := decode[paysvc.Decline](t, first)
		assert.Equal(t, paysvc.ErrorCardDeclined, d.Error)
		assert.Equal(t, tc.code, d.DeclineCode)
		again, err := p.post(t, "/charges", tc.key, req)
		require.NoError(t, err)
		assert.Equal(t, http.StatusPaymentRequired, again.status)
		assert.True(t, again.replayed, "a retry of a declined key replays the decline")
		assert.Equal(t, first.body, again.body)
	}
	// A good card declined by the fault (arrival 5); its retry (arrival 6, not picked)
	// replays the decline: never charged.
	for range 2 {
		a, err := p.post(t, "/charges", "k-by-fault", charge("order-f"))
		require.NoError(t, err)
		assert.Equal(t, http.StatusPaymentRequired, a.status)
	}
	// A good card under Decline: 1 is declined on every attempt.
	p2 := newProvider(t, paysvc.Config{Faults: paysvc.Faults{Decline: 1}})
	a, err := p2.post(t, "/charges", "k", charge("order-x"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusPaymentRequired, a.status)
	b, err := p2.post(t, "/charges", "k", charge("order-x"))
	require.NoError(t, err)
	assert.True(t, b.replayed)
	assert.Equal(t, paysvc.Stats{Declines: 1}, p2.stats(t))
	assert.Equal(t, paysvc.Stats{Declines: 3}, p.stats(t))
}

func TestChargeFailBeforeChargeThenRetry(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{Faults: paysvc.Faults{
		Decide: onArrival(paysvc.RouteCharges, 1, paysvc.Decision{Fail: true}),
	}})
	failed, err := p.post(t, "/charges", "k1", charge("order-1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, failed.status)
	assert.Equal(t, 0, p.count(t, `SELECT count(*) FROM charges`))
	assert.Equal(t, 0, p.count(t, `SELECT count(*) FROM dedupe_keys`), "nothing claimed: the key is free")

	retry, err := p.post(t, "/charges", "k1", charge("order-1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, retry.status)
	assert.False(t, retry.replayed, "the retry is the first execution")
	assert.Equal(t, paysvc.Stats{Charges: 1, ChargedReferences: 1}, p.stats(t))
	assert.Equal(t, paysvc.FaultCounts{ChargeArrivals: 2, Failed: 1}, p.svc.FaultCounts())
}

func TestChargeDroppedAfterCommitThenRetry(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{Faults: paysvc.Faults{
		Decide: onArrival(paysvc.RouteCharges, 1, paysvc.Decision{Drop: true}),
	}})
	_, err := p.post(t, "/charges", "k1", charge("order-1"))
	require.Error(t, err, "the connection is closed without an answer")

	// The charge committed although the client heard nothing.
	cs, err := paysvc.ListCharges(t.Context(), p.db.Pool, "order-1")
	require.NoError(t, err)
	require.Len(t, cs, 1)

	retry, err := p.post(t, "/charges", "k1", charge("order-1"))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, retry.status)
	assert.True(t, retry.replayed)
	assert.Equal(t, cs[0].ID, decode[paysvc.Charge](t, retry).ID, "the retry names the charge that was made")
	assert.Equal(t, paysvc.Stats{Charges: 1, ChargedReferences: 1}, p.stats(t))
	assert.Equal(t, paysvc.FaultCounts{ChargeArrivals: 2, Dropped: 1}, p.svc.FaultCounts())
}

func TestChargeDropNeverHidesAReplay(t *testing.T) {
	// Drop on every arrival: the first answer is lost, every replay is delivered; a dropped
	// decline is replayed as a decline.
	t.Parallel()
	p := newProvider(t, paysvc.Config{Faults: paysvc.Faults{DropAfterCommit: 1}})
	declined := charge("order-2")
	declined.Card = paysvc.CardDeclined
	for _, tc := range []struct {
		key    string
		req    paysvc.ChargeRequest
		status int
	}{{"k1", charge("order-1"), http.StatusCreated}, {"k2", declined, http.StatusPaymentRequired}} {
		_, err := p.post(t, "/charges", tc.key, tc.req)
		require.Error(t, err)
		for range 2 {
			retry, err := p.post(t, "/charges", tc.key, tc.req)
			require.NoError(t, err)
			assert.Equal(t, tc.status, retry.status)
			assert.True(t, retry.replayed)
		}
	}
	assert.Equal(t, paysvc.Stats{Charges: 1, ChargedReferences: 1, Declines: 1}, p.stats(t))
	assert.Equal(t, paysvc.FaultCounts{ChargeArrivals: 6, Dropped: 2}, p.svc.FaultCounts())
}

func TestChargeSlowAnswer(t *testing.T) {
	const delay = 300 * time.Millisecond
	t.Parallel()
	p := newProvider(t, paysvc.Config{Faults: paysvc.Faults{
		Decide: func(a paysvc.Attempt) paysvc.Decision {
			switch a.N {
			case 1:
				return paysvc.Decision{Delay: delay}
			case 2:
				return paysvc.Decision{Delay: time.Hour} // ends when the client leaves
			}
			return paysvc.Decision{}
		},
	}})
	start := time.Now()
	a, err := p.post(t, "/charges", "k1", charge("order-1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, a.status)
	assert.GreaterOrEqual(t, time.Since(start), delay)

	// A client that gives up while the answer is held back: the charge happened all the
	// same, and the retry replays it. The client gives up once the charge is visible, so the
	// test does not depend on how fast the machine is.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/charges",
		strings.NewReader(`{"amount":1999,"currency":"usd","card":"tok_visa","reference":"order-2"}`))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", "k2")
	gaveUp := make(chan error, 1)
	go func() {
		resp, err := p.hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gaveUp <- err
	}()
	require.Eventually(t, func() bool {
		return p.count(t, `SELECT count(*) FROM charges WHERE reference = 'order-2'`) == 1
	}, 30*time.Second, 5*time.Millisecond, "the charge commits before the held answer")
	cancel()
	require.ErrorIs(t, <-gaveUp, context.Canceled)

	retry, err := p.post(t, "/charges", "k2", charge("order-2"))
	require.NoError(t, err)
	assert.True(t, retry.replayed)
	assert.Equal(t, paysvc.Stats{Charges: 2, ChargedReferences: 2}, p.stats(t))
	assert.Equal(t, paysvc.FaultCounts{ChargeArrivals: 3, Delayed: 2}, p.svc.FaultCounts())
}

func TestChargeConcurrentDuplicates(t *testing.T) {
	const n = 8
	t.Parallel()
	p := newProvider(t, paysvc.Config{LockWait: 30 * time.Second})
	pgtest.Warm(t, p.db.Pool, n)
	start := make(chan struct{})
	answers := make([]answer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			answers[i], errs[i] = p.post(t, "/charges", "same-key", charge("order-1"))
		})
	}
	close(start)
	wg.Wait()
	ids := map[string]bool{}
	for i := range n {
		require.NoError(t, errs[i])
		// With a generous LockWait every duplicate waits for the first and gets its answer;
		// 409 would also keep the promise, so it is allowed.
		if answers[i].status == http.StatusConflict {
			continue
		}
		require.Equal(t, http.StatusCreated, answers[i].status, "%s", answers[i].body)
		ids[decode[paysvc.Charge](t, answers[i]).ID] = true
	}
	assert.Len(t, ids, 1, "every answer names the same charge")
	assert.Equal(t, paysvc.Stats{Charges: 1, ChargedReferences: 1}, p.stats(t))
}

func TestListChargesAndStatsRoutes(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{})
	for _, k := range []string{"a", "b"} {
		// Two keys for one reference: the provider cannot know they are one order, so this is
		// the double charge the demo counts.
		a, err := p.post(t, "/charges", k, charge("order-1"))
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, a.status)
	}
	var list struct{ Data []paysvc.Charge }
	require.Equal(t, http.StatusOK, p.get(t, "/charges?reference=order-1", &list))
	assert.Len(t, list.Data, 2)
	require.Equal(t, http.StatusOK, p.get(t, "/charges?reference=none", &list))
	assert.Empty(t, list.Data)
	assert.Equal(t, http.StatusBadRequest, p.get(t, "/charges", nil))
	var st paysvc.Stats
	require.Equal(t, http.StatusOK, p.get(t, "/stats", &st))
	assert.Equal(t, paysvc.Stats{Charges: 2, ChargedReferences: 1, DoubleCharges: 1}, st)
	var fc paysvc.FaultCounts
	require.Equal(t, http.StatusOK, p.get(t, "/faults", &fc))
	assert.Equal(t, paysvc.FaultCounts{ChargeArrivals: 2}, fc)
	assert.Equal(t, http.StatusOK, p.get(t, "/healthz", nil))
}
