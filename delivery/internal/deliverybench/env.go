// Package deliverybench measures the delivery module beside its peers: a business
// transaction with and without EnqueueTx (and with a hand-written narrow outbox row), and
// delivery throughput to a no-op receiver and to a dedupehttp receiver, whose own throughput
// is measured in the same run. cmd/deliverybench prints the table; bench_test.go in the
// module runs the same code under go test -bench.
package deliverybench

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/delivery"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// Schema is the business tables of the workloads: products whose stock an order decrements,
// orders, and the narrow outbox row a hand-written outbox would insert.
const Schema = `
CREATE TABLE bench_products (id int PRIMARY KEY, stock bigint NOT NULL);
INSERT INTO bench_products SELECT g, 1000000000 FROM generate_series(1, 1000) g;
CREATE TABLE bench_orders (
  id bigserial PRIMARY KEY, product int NOT NULL, qty int NOT NULL, customer text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE bench_outbox (id bigserial PRIMARY KEY, payload jsonb NOT NULL);
CREATE TABLE bench_effects (key text NOT NULL, body bytea);
`

// Env is one benchmark schema with River's tables and the workload tables.
type Env struct {
	Pool   *pgxpool.Pool
	Schema string
	URL    string
	// Quiet is a logger that drops River's logs.
	Quiet *slog.Logger
	// AsyncPool reaches the same schema with synchronous_commit = off, for Clients whose own
	// transactions (fetching, completing, forwarding) need not wait for the WAL flush.
	AsyncPool *pgxpool.Pool
	// target, when set, is the URL the enqueue cells send to (a started Client delivers).
	target string
}

// Open creates the schema in the database at baseURL (DEDUPE_TEST_DATABASE_URL) with a pool of
// maxConns connections; the returned function drops it.
func Open(ctx context.Context, baseURL string, maxConns int32) (*Env, func(), error) {
	db, drop, err := pgtest.Create(ctx, baseURL, "deliverybench", &pgtest.Options{MaxConns: maxConns})
	if err != nil {
		return nil, nil, err
	}
	if err := delivery.Migrate(ctx, db.Pool, &delivery.MigrateConfig{Schema: db.Schema}); err != nil {
		drop()
		return nil, nil, err
	}
	if _, err := db.Pool.Exec(ctx, Schema); err != nil {
		drop()
		return nil, nil, fmt.Errorf("bench schema: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		drop()
		return nil, nil, err
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	async, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		drop()
		return nil, nil, err
	}
	env := &Env{Pool: db.Pool, AsyncPool: async, Schema: db.Schema, URL: db.URL, Quiet: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return env, func() { async.Close(); drop() }, nil
}

// Reset empties the tables that grow (River's jobs, orders, outbox, effects, dedupe keys), so
// that every cell starts from the same table sizes.
func (e *Env) Reset(ctx context.Context) error {
	_, err := e.Pool.Exec(ctx, `TRUNCATE river_job, pgonce_delivery_outbox, bench_orders, bench_outbox, bench_effects, dedupe_keys`)
	return err
}
