package paysvc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/examples/payments/payclient"
	"github.com/pgonce/pgonce/examples/payments/paysvc"
)

// TestClientAgainstFaultyProvider is the demo in miniature: payclient drives charges through
// every fault at once, retrying indeterminate outcomes with the same key, and the provider's
// database must show exactly the outcome each caller ended with.
func TestClientAgainstFaultyProvider(t *testing.T) {
	t.Parallel()
	const refs, workers, maxAttempts = 40, 4, 100
	p := newProvider(t, paysvc.Config{Faults: paysvc.Faults{
		FailBeforeCharge: 0.25, DropAfterCommit: 0.25, Slow: 0.1, SlowDelay: 1500 * time.Millisecond,
		Decline: 0.2, Seed: 1,
	}})
	// A fresh connection per call: on a reused keep-alive connection net/http itself re-sends
	// a keyed POST whose answer was dropped, and the caller would never see the EOF.
	c, err := payclient.New(payclient.Config{BaseURL: p.url, Timeout: time.Second,
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}})
	require.NoError(t, err)

	type result struct {
		ref, chargeID string
		declined      bool
		attempts      int
		err           error
	}
	var mu sync.Mutex
	indeterminate := map[string]int{}
	results := make(chan result, refs)
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ref := range jobs {
				r := result{ref: ref}
				for r.attempts < maxAttempts {
					r.attempts++
					ch, err := c.Charge(context.Background(), "key-"+ref, payclient.ChargeRequest{
						Amount: 500, Currency: "usd", Card: paysvc.CardOK, Reference: ref})
					if payclient.IsIndeterminate(err) {
						var ie *payclient.IndeterminateError
						errors.As(err, &ie)
						mu.Lock()
						indeterminate[indeterminateKind(ie)]++
						mu.Unlock()
						continue // the one safe move: the same key again
					}
					r.chargeID, r.declined = ch.ID, errors.Is(err, payclient.ErrDeclined)
					if !r.declined {
						r.err = err
					}
					break
				}
				results <- r
			}
		})
	}
	for i := range refs {
		jobs <- fmt.Sprintf("order-%d", i)
	}
	close(jobs)
	wg.Wait()
	close(results)

	var charged, declined, attempts int
	for r := range results {
		require.NoError(t, r.err, r.ref)
		require.True(t, r.chargeID != "" || r.declined, "%s: no definite outcome in %d attempts", r.ref, r.attempts)
		attempts += r.attempts
		cs, err := paysvc.ListCharges(context.Background(), p.db.Pool, r.ref)
		require.NoError(t, err)
		if r.declined {
			declined++
			assert.Empty(t, cs, "%s was declined, so never charged", r.ref)
			continue
		}
		charged++
		if assert.Len(t, cs, 1, r.ref) {
			assert.Equal(t, r.chargeID, cs[0].ID, "%s: the caller holds the charge that was made", r.ref)
		}
	}
	st := p.stats(t)
	assert.Equal(t, int64(charged), st.Charges)
	assert.Equal(t, int64(declined), st.Declines)
	assert.Zero(t, st.DoubleCharges)
	t.Logf("%d references: %d charged, %d declined, %d attempts; indeterminate: %v", refs, charged, declined, attempts, indeterminate)
	assert.Positive(t, indeterminate["dropped"], "the drop fault surfaced to the client")
}

func indeterminateKind(e *payclient.IndeterminateError) string {
	switch {
	case e.Status != 0:
		return fmt.Sprintf("http_%d", e.Status)
	case errors.Is(e, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(e, io.EOF), errors.Is(e, io.ErrUnexpectedEOF):
		return "dropped"
	}
	return "other: " + e.Err.Error()
}
