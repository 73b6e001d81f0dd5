package delivery_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/pgonce/pgonce/delivery"
)

// A message with an ordering key is delivered only after the earlier ones with that key; other
// keys are not held back, and a dead message releases its key.
func TestOrderingPerKey(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	var (
		mu        sync.Mutex
		seq       int
		arrived   = map[string]int{} // key -> seq of its first request
		delivered = map[string]int{} // key -> seq of its 2xx
	)
	otherDone := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, n int, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		defer mu.Unlock()
		seq++
		if _, ok := arrived[key]; !ok {
			arrived[key] = seq
		}
		status := 200
		switch key {
		case "k1": // fails until the message of another key got through, and at least twice
			select {
			case <-otherDone:
			default:
				status = 503
			}
			if n <= 2 {
				status = 503
			}
		case "j1":
			defer close(otherDone)
		case "d1":
			status = 404
		}
		if status == 200 {
			delivered[key] = seq
		}
		w.WriteHeader(status)
	})
	cfg := fastConfig(db.Schema)
	cfg.OrderingRecheck = 5 * time.Millisecond
	c := startClient(t, db.Pool, cfg)
	m := func(key, ordering string) delivery.Message {
		return delivery.Message{URL: rc.URL, Key: key, OrderingKey: ordering}
	}
	ids := enqueue(t, c, db.Pool, m("k1", "k"), m("k2", "k"), m("d1", "d"), m("d2", "d"))
	ids = append(ids, enqueue(t, c, db.Pool, m("k3", "k"), m("j1", "j"))...)
	waitState(t, db.Pool, ids[2], "cancelled")
	for _, i := range []int{0, 1, 3, 4, 5} {
		waitState(t, db.Pool, ids[i], "completed")
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Greater(t, arrived["k2"], delivered["k1"], "k2 sent before k1 was delivered")
	assert.Greater(t, arrived["k3"], delivered["k2"], "k3 sent before k2 was delivered")
	assert.Less(t, delivered["j1"], delivered["k1"], "j1 held back by key k")
	assert.NotZero(t, delivered["d2"])
}
