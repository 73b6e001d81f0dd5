package soak

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/delivery"
	"github.com/pgonce/pgonce/examples/orders/ordersvc"
	"github.com/pgonce/pgonce/examples/payments/payclient"
	"github.com/pgonce/pgonce/examples/payments/paysvc"
)

// Checkout is the paid checkout running in this process: a payment provider with its own
// database and faults, order instances on another database, and the outbox's delivery
// worker. Restart and KillDelivery stand for a process dying mid-run.
type Checkout struct {
	Orders, Payments *pgxpool.Pool
	Targets          []string

	cfg      ordersvc.Config
	provider *httptest.Server
	mu       sync.Mutex
	svcs     []*ordersvc.Service
	servers  []*httptest.Server
	worker   *delivery.Client
}

// CheckoutFaults are the provider's faults the soak and the test switch on.
var CheckoutFaults = paysvc.Faults{
	FailBeforeCharge: 0.1, DropAfterCommit: 0.1, Slow: 0.05, SlowDelay: 1500 * time.Millisecond,
	Decline: 0.05, NotifyFail: 0.1,
}

// StartCheckout migrates both databases (ordersURL: the order service's; paymentsURL: the
// provider's), starts the provider with faults, the delivery worker, and n order instances
// (lease 1s, completer every 200ms), and seeds sku with stock.
func StartCheckout(ctx context.Context, ordersURL, paymentsURL string, faults paysvc.Faults, n int, sku string, stock int) (*Checkout, error) {
	c := &Checkout{}
	var err error
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if err := paysvc.Migrate(ctx, paymentsURL); err != nil {
		return nil, err
	}
	if c.Payments, err = pgxpool.New(ctx, paymentsURL); err != nil {
		return nil, err
	}
	provider, err := paysvc.New(paysvc.Config{DB: c.Payments, Faults: faults})
	if err != nil {
		return nil, err
	}
	c.provider = httptest.NewServer(provider.Handler())
	if err := ordersvc.Migrate(ctx, ordersURL); err != nil {
		return nil, err
	}
	if c.Orders, err = pgxpool.New(ctx, ordersURL); err != nil {
		return nil, err
	}
	if err := delivery.Migrate(ctx, c.Orders, nil); err != nil {
		return nil, err
	}
	if err := c.KillDelivery(ctx); err != nil { // starts the first worker
		return nil, err
	}
	pc, err := payclient.New(payclient.Config{BaseURL: c.provider.URL, Timeout: time.Second,
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}})
	if err != nil {
		return nil, err
	}
	notifyURL := c.provider.URL + "/notifications"
	c.cfg = ordersvc.Config{
		DatabaseURL: ordersURL, Payments: pc, Lease: time.Second, CompleteEvery: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
		Notify: func(ctx context.Context, tx pgx.Tx, key string, body []byte) error {
			c.mu.Lock()
			w := c.worker
			c.mu.Unlock()
			return w.EnqueueTx(ctx, tx, delivery.Message{URL: notifyURL, Key: key, Body: body})
		},
	}
	for i := range n {
		svc, srv, err := c.open(ctx, i, "")
		if err != nil {
			return nil, err
		}
		c.svcs, c.servers = append(c.svcs, svc), append(c.servers, srv)
		c.Targets = append(c.Targets, srv.URL)
	}
	if err := c.svcs[0].Seed(ctx, sku, "checkout soak "+sku, stock); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// open starts instance i, on addr when given (a restart keeps its address), else on a free port.
func (c *Checkout) open(ctx context.Context, i int, addr string) (*ordersvc.Service, *httptest.Server, error) {
	cfg := c.cfg
	cfg.Instance = fmt.Sprintf("checkout-%d", i)
	svc, err := ordersvc.Open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	srv := httptest.NewUnstartedServer(svc.Handler())
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			svc.Close()
			return nil, nil, err
		}
		srv.Listener.Close()
		srv.Listener = l
	}
	srv.Start()
	return svc, srv, nil
}

// KillDelivery stops the delivery worker at once, cancelling the deliveries in flight (they
// are sent again, with the same key), and starts a new one.
func (c *Checkout) KillDelivery(ctx context.Context) error {
	c.mu.Lock()
	old := c.worker
	c.mu.Unlock()
	if old != nil {
		now, cancel := context.WithCancel(ctx)
		cancel() // no grace: in-flight deliveries are cut off
		if err := old.Stop(now); err != nil {
			return err
		}
	}
	w, err := delivery.New(c.Orders, &delivery.Config{Workers: 8, RequestTimeout: 5 * time.Second, RescueAfter: 15 * time.Second})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.worker = w
	c.mu.Unlock()
	return nil
}

// Restart closes order instance i, cutting its connections (requests in flight lose their
// clients; their leases run out or are given back), and opens it again on the same address.
func (c *Checkout) Restart(ctx context.Context, i int) error {
	addr := c.servers[i].Listener.Addr().String()
	c.servers[i].CloseClientConnections()
	c.servers[i].Close()
	c.svcs[i].Close()
	svc, srv, err := c.open(ctx, i, addr)
	if err != nil {
		return err
	}
	c.svcs[i], c.servers[i] = svc, srv
	return nil
}

// Seed creates (or resets) a product with stock units.
func (c *Checkout) Seed(ctx context.Context, sku string, stock int) error {
	return c.svcs[0].Seed(ctx, sku, "checkout soak "+sku, stock)
}

// Close stops everything StartCheckout started.
func (c *Checkout) Close() {
	for _, s := range c.servers {
		s.Close()
	}
	for _, s := range c.svcs {
		s.Close()
	}
	if c.worker != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = c.worker.Stop(sctx)
		cancel()
	}
	if c.provider != nil {
		c.provider.Close()
	}
	if c.Orders != nil {
		c.Orders.Close()
	}
	if c.Payments != nil {
		c.Payments.Close()
	}
}
