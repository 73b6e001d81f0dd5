package integration_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
)

// roundTrips counts client-server exchanges: every query and every batch (a pipelined batch
// is sent and answered in one exchange).
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// A new key costs exactly the plain transaction's round trips; a replay costs two.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.MaxConns = 1 // one connection, so its statement cache is warm after the first call
	rt := &roundTrips{}
	cfg.ConnConfig.Tracer = rt
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	d := dedupe.New(nil)

	plain := func(key string) {
		require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO orders (request_key) VALUES ($1)`, key)
			return err
		}))
	}
	doVia := func(d *dedupe.Deduper, h dedupe.DB, scope, key string) dedupe.Result {
		res, err := d.Do(ctx, h, dedupe.Request{Scope: scope, Key: key}, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			_, err := tx.Exec(ctx, `INSERT INTO orders (request_key) VALUES ($1)`, key)
			return dedupe.Response{Status: 201}, err
		})
		require.NoError(t, err)
		return res
	}
	do := func(h dedupe.DB, key string) dedupe.Result { return doVia(d, h, "rt", key) }
	measure := func(f func()) int64 {
		before := rt.n.Load()
		f()
		return rt.n.Load() - before
	}
	// Warm the statement cache (first use of a statement costs a describe round trip).
	plain("warm")
	do(pool, "warm")
	do(pool, "warm")

	assert.Equal(t, int64(3), measure(func() { plain("p") }), "plain: begin, insert, commit")
	plainTrips := measure(func() { plain("p2") })
	assert.Equal(t, plainTrips, measure(func() { assert.False(t, do(pool, "n").Replayed()) }), "new key: begin+lock+lookup, insert, key+commit")
	assert.LessOrEqual(t, measure(func() { assert.True(t, do(pool, "n").Replayed()) }), int64(2), "replay: begin+lookup, rollback")

	// A wrapper of the pool that hands out its connections keeps the pipelined COMMIT.
	assert.Equal(t, plainTrips, measure(func() { assert.False(t, do(wrappedPool{pool}, "w").Replayed()) }), "wrapped pool: as the pool")
	assert.LessOrEqual(t, measure(func() { assert.True(t, do(wrappedPool{pool}, "w").Replayed()) }), int64(2), "wrapped pool: replay as the pool")

	// A connection of the caller's: the same pipelining.
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	assert.Equal(t, plainTrips, measure(func() { assert.False(t, do(conn.Conn(), "c").Replayed()) }), "conn: as the pool")
	assert.LessOrEqual(t, measure(func() { assert.True(t, do(conn.Conn(), "c").Replayed()) }), int64(2), "conn: replay as the pool")
	conn.Release()

	// Insert-first (REPEATABLE READ): the key's lock and the claim travel with BEGIN, the
	// response with COMMIT.
	rr := dedupe.New(&dedupe.Options{TxOptions: pgx.TxOptions{IsoLevel: pgx.RepeatableRead}})
	doRR := func(key string) dedupe.Result { return doVia(rr, pool, "rt-rr", key) }
	doRR("warm")
	assert.Equal(t, plainTrips, measure(func() { assert.False(t, doRR("r").Replayed()) }), "insert-first new key: begin+lock+claim, insert, store+commit")
	assert.LessOrEqual(t, measure(func() { assert.True(t, doRR("r").Replayed()) }), int64(2), "insert-first replay: begin+lock+claim, rollback")

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	assert.Equal(t, int64(3), measure(func() { do(tx, "j") }), "joined: savepoint+lock+claim, insert, store+release")
}

// wrappedPool is a pool behind a type of the caller's (instrumentation, routing): it has
// Begin and Acquire, and nothing else of the pool.
type wrappedPool struct{ p *pgxpool.Pool }

func (w wrappedPool) Begin(ctx context.Context) (pgx.Tx, error)          { return w.p.Begin(ctx) }
func (w wrappedPool) Acquire(ctx context.Context) (*pgxpool.Conn, error) { return w.p.Acquire(ctx) }
