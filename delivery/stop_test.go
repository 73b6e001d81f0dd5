package delivery_test

import (
	"context"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/delivery"
)

// A Client stopped mid-delivery puts the message back without counting the attempt; the
// next Client sends it again with the same key. Stop leaves no goroutine behind.
func TestStoppedMidDelivery(t *testing.T) {
	db := testDB(t)
	arrived := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, n int, r *http.Request) {
		if n == 1 {
			close(arrived)
			<-r.Context().Done() // the worker gave up: its connection closed
			return
		}
		w.WriteHeader(200)
	})
	ctx := context.Background()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	cfg := fastConfig(db.Schema)
	cfg.HTTPClient = &http.Client{Transport: transport}
	before := runtime.NumGoroutine()

	a, err := delivery.New(db.Pool, cfg)
	require.NoError(t, err)
	require.NoError(t, a.Start(ctx))
	ids := enqueue(t, a, db.Pool, delivery.Message{URL: rc.URL, Key: "slow-1"})
	select {
	case <-arrived:
	case <-time.After(time.Minute):
		t.Fatal("no delivery attempt within a minute")
	}
	stopCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	require.NoError(t, a.Stop(stopCtx)) // waits 100 ms, then cancels the delivery
	var state string
	var attempt int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT state, attempt FROM river_job WHERE args->>'key' = $1`, ids[0]).Scan(&state, &attempt))
	assert.Equal(t, "available", state)
	assert.Equal(t, 0, attempt, "an interrupted attempt is not counted")

	transport.CloseIdleConnections()
	waitFor(t, 10*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "goroutines back to %d", before)

	startClient(t, db.Pool, fastConfig(db.Schema))
	waitState(t, db.Pool, ids[0], "completed")
	got := rc.requests()
	require.Len(t, got, 2)
	assert.Equal(t, got[0].Key, got[1].Key)
}
