package deliverybench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/pgonce/pgonce/delivery"
)

// TxCase is one business transaction variant.
type TxCase struct {
	ID, Name string
	// Order runs the realistic order (lock the product FOR UPDATE, decrement its stock,
	// insert the order) instead of a single INSERT.
	Order bool
	// Outbox is how the notification is recorded: "" none, "enqueue" EnqueueTx (no Client
	// started), "enqueue-live" EnqueueTx while a started Client forwards and delivers to a
	// no-op receiver, "river" River's InsertTx (River's default fetch cooldown, which limits
	// its insert NOTIFYs to one per 100 ms), "river-row" River's job row inserted by hand,
	// "narrow" a narrow row by hand.
	Outbox string
}

// TxCases are the enqueue-overhead cells, each business shape alone and with each outbox.
func TxCases() []TxCase {
	var out []TxCase
	for _, order := range []bool{false, true} {
		shape, name := "insert", "one INSERT"
		if order {
			shape, name = "order", "order (FOR UPDATE, UPDATE, INSERT)"
		}
		out = append(out,
			TxCase{ID: shape, Name: name, Order: order},
			TxCase{ID: shape + "+enqueue", Name: name + " + EnqueueTx", Order: order, Outbox: "enqueue"},
			TxCase{ID: shape + "+enqueue-live", Name: name + " + EnqueueTx, Client forwarding and delivering", Order: order, Outbox: "enqueue-live"},
			TxCase{ID: shape + "+river", Name: name + " + River InsertTx", Order: order, Outbox: "river"},
			TxCase{ID: shape + "+river-row", Name: name + " + River's job row by hand (one INSERT, no NOTIFY)", Order: order, Outbox: "river-row"},
			TxCase{ID: shape + "+narrow", Name: name + " + narrow outbox row by hand", Order: order, Outbox: "narrow"},
		)
	}
	return out
}

// Message is the notification every case enqueues: a realistic webhook.
func Message(orderID int64) delivery.Message {
	return delivery.Message{
		URL: "https://hooks.example.com/orders", Key: fmt.Sprintf("order-%d-confirmed", orderID),
		Body:   []byte(fmt.Sprintf(`{"type":"order.confirmed","order":%d,"amount":1999,"currency":"eur"}`, orderID)),
		Header: map[string][]string{"Content-Type": {"application/json"}},
	}
}

// RunTx runs c from clients goroutines for d and returns transactions per second.
func (e *Env) RunTx(ctx context.Context, c TxCase, clients int, d time.Duration) (float64, error) {
	cl, err := delivery.New(e.Pool, &delivery.Config{Schema: e.Schema, Logger: e.Quiet})
	if err != nil {
		return 0, err
	}
	rc, err := river.NewClient(riverpgxv5.New(e.Pool), &river.Config{Schema: e.Schema, Logger: e.Quiet})
	if err != nil {
		return 0, err
	}
	if c.Outbox == "enqueue-live" {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
		defer srv.Close()
		e.target = srv.URL
		defer func() { e.target = "" }()
		if err := cl.Start(ctx); err != nil {
			return 0, err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_ = cl.Stop(sctx)
		}()
	}
	var (
		ops      atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		once     sync.Once
	)
	deadline := time.Now().Add(d)
	start := make(chan struct{})
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for time.Now().Before(deadline) {
				if err := e.tx(ctx, c, cl, rc); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				ops.Add(1)
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	return float64(ops.Load()) / time.Since(t0).Seconds(), firstErr
}

func (e *Env) tx(ctx context.Context, c TxCase, cl *delivery.Client, rc *river.Client[pgx.Tx]) error {
	return pgx.BeginFunc(ctx, e.Pool, func(tx pgx.Tx) error {
		product := 1 + rand.IntN(1000)
		if c.Order {
			var stock int64
			if err := tx.QueryRow(ctx, `SELECT stock FROM bench_products WHERE id = $1 FOR UPDATE`, product).Scan(&stock); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE bench_products SET stock = stock - 1 WHERE id = $1`, product); err != nil {
				return err
			}
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO bench_orders (product, qty, customer) VALUES ($1, 1, 'cus_4242') RETURNING id`, product).Scan(&id); err != nil {
			return err
		}
		switch c.Outbox {
		case "enqueue", "enqueue-live":
			m := Message(id)
			if e.target != "" {
				m.URL = e.target
			}
			return cl.EnqueueTx(ctx, tx, m)
		case "river":
			m := Message(id)
			_, err := rc.InsertTx(ctx, tx, riverArgs{URL: m.URL, Key: m.Key, Body: m.Body, Header: m.Header}, nil)
			return err
		case "river-row":
			m := Message(id)
			_, err := tx.Exec(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state, scheduled_at)
VALUES (jsonb_build_object('url', $1::text, 'key', $2::text, 'body', $3::text), 'pgonce_delivery', 25, 'pgonce_delivery', 'available', now())`, m.URL, m.Key, string(m.Body))
			return err
		case "narrow":
			m := Message(id)
			_, err := tx.Exec(ctx, `INSERT INTO bench_outbox (payload) VALUES (jsonb_build_object('url', $1::text, 'key', $2::text, 'body', $3::text))`, m.URL, m.Key, string(m.Body))
			return err
		}
		return nil
	})
}

// riverArgs is the message as a River job of another kind (this peer has no worker).
type riverArgs struct {
	URL    string              `json:"url"`
	Key    string              `json:"key"`
	Body   []byte              `json:"body,omitempty"`
	Header map[string][]string `json:"header,omitempty"`
}

func (riverArgs) Kind() string { return "bench_river_insert" }
