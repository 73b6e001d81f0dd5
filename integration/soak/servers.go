package soak

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/examples/orders/ordersvc"
)

// errInjected is the failure the soak asks the service for.
var errInjected = errors.New("soak: injected failure after the writes")

// Instances are order services running in this process on loopback ports.
type Instances struct {
	Services []*ordersvc.Service
	Targets  []string
	servers  []*httptest.Server
}

// Close stops the servers and closes the services.
func (in *Instances) Close() {
	for _, s := range in.servers {
		s.Close()
	}
	for _, s := range in.Services {
		s.Close()
	}
}

// Start runs n instances of the order service on cfg.DatabaseURL (and cfg.RedisURL), each
// failing requests that carry FailHeader after their writes, and seeds skus.
func Start(ctx context.Context, cfg ordersvc.Config, n int, skus map[string]int) (*Instances, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.AfterOrder = func(ctx context.Context, r *http.Request, tx pgx.Tx, o ordersvc.Order) error {
		if r.Header.Get(FailHeader) != "" {
			return errInjected
		}
		return nil
	}
	in := &Instances{}
	for i := range n {
		cfg.Instance = fmt.Sprintf("soak-%d", i)
		svc, err := ordersvc.Open(ctx, cfg)
		if err != nil {
			in.Close()
			return nil, err
		}
		srv := httptest.NewServer(svc.Handler())
		in.Services = append(in.Services, svc)
		in.servers = append(in.servers, srv)
		in.Targets = append(in.Targets, srv.URL)
	}
	for sku, stock := range skus {
		if err := in.Services[0].Seed(ctx, sku, "soak product "+sku, stock); err != nil {
			in.Close()
			return nil, err
		}
	}
	return in, nil
}
