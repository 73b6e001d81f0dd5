package paysvc_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/examples/payments/paysvc"
	"github.com/pgonce/pgonce/internal/pgtest"
)

func note(ref string) map[string]any {
	return map[string]any{"order_ref": ref, "event": "order.confirmed", "amount": 1999}
}

func TestNotificationReceiverDedupes(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{})
	first, err := p.post(t, "/notifications", "n1", note("order-1"))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, first.status, "%s", first.body)
	rec := decode[paysvc.NotificationReceipt](t, first)
	assert.Equal(t, "order-1", rec.OrderRef)

	again, err := p.post(t, "/notifications", "n1", note("order-1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, again.status)
	assert.True(t, again.replayed)
	assert.Equal(t, first.body, again.body)

	st := p.stats(t)
	assert.Equal(t, int64(2), st.NotificationArrivals, "both deliveries arrived")
	assert.Equal(t, int64(1), st.Notifications, "one effect")
	assert.Equal(t, int64(0), st.DuplicateNotifications)
	assert.Equal(t, 1, p.count(t, `SELECT count(*) FROM notifications WHERE key = 'n1' AND body->>'event' = 'order.confirmed'`))

	// A second delivery of the same order under another key is a second effect: the receiver
	// dedupes on the key, and the counts make the duplicate visible.
	_, err = p.post(t, "/notifications", "n2", note("order-1"))
	require.NoError(t, err)
	st = p.stats(t)
	assert.Equal(t, paysvc.Stats{NotificationArrivals: 3, Notifications: 2, NotifiedOrders: 1, DuplicateNotifications: 1}, st)
}

func TestNotificationFailBeforeEffectThenRetry(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{Faults: paysvc.Faults{
		Decide: onArrival(paysvc.RouteNotifications, 1, paysvc.Decision{Fail: true}),
	}})
	failed, err := p.post(t, "/notifications", "n1", note("order-1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, failed.status)
	assert.Equal(t, paysvc.Stats{NotificationArrivals: 1}, p.stats(t), "counted, no effect")

	retry, err := p.post(t, "/notifications", "n1", note("order-1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, retry.status)
	assert.False(t, retry.replayed)
	assert.Equal(t, paysvc.Stats{NotificationArrivals: 2, Notifications: 1, NotifiedOrders: 1}, p.stats(t))
}

func TestNotificationInvalid(t *testing.T) {
	t.Parallel()
	p := newProvider(t, paysvc.Config{})
	for i, body := range []any{
		[]byte(`[1]`), []byte(`"x"`), []byte(`{}`), []byte(`{"order_ref": 5}`), []byte(`{"order_ref":"a"} {}`),
		[]byte(`{"order_ref":"a","x":"\u0000"}`), []byte(`nope`),
	} {
		a, err := p.post(t, "/notifications", "bad-"+string(rune('a'+i)), body)
		require.NoError(t, err)
		assert.Equal(t, http.StatusBadRequest, a.status, "%s: %s", body, a.body)
	}
	a, err := p.post(t, "/notifications", "", note("order-1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, a.status, "key required")
	assert.Equal(t, paysvc.Stats{NotificationArrivals: 8}, p.stats(t))
}

func TestNotificationConcurrentRedeliveries(t *testing.T) {
	t.Parallel()
	const n = 8
	p := newProvider(t, paysvc.Config{LockWait: 30 * time.Second})
	pgtest.Warm(t, p.db.Pool, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			<-start
			a, err := p.post(t, "/notifications", "same", note("order-1"))
			if err == nil {
				statuses[i] = a.status
			}
		})
	}
	close(start)
	wg.Wait()
	for _, st := range statuses {
		assert.Contains(t, []int{http.StatusCreated, http.StatusConflict}, st)
	}
	assert.Equal(t, paysvc.Stats{NotificationArrivals: n, Notifications: 1, NotifiedOrders: 1}, p.stats(t))
}

func TestNotificationDroppedAfterCommitThenRedelivered(t *testing.T) {
	t.Parallel()
	// The receiver commits the effect and the sender hears nothing: it must deliver again,
	// and the redelivery must not add a second effect.
	p := newProvider(t, paysvc.Config{Faults: paysvc.Faults{
		Decide: onArrival(paysvc.RouteNotifications, 1, paysvc.Decision{Drop: true}),
	}})
	_, err := p.post(t, "/notifications", "n1", note("order-1"))
	require.Error(t, err)
	retry, err := p.post(t, "/notifications", "n1", note("order-1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, retry.status)
	assert.True(t, retry.replayed)
	assert.Equal(t, paysvc.Stats{NotificationArrivals: 2, Notifications: 1, NotifiedOrders: 1}, p.stats(t))
}
