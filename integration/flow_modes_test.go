package integration_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/flow"
)

// modeFlow runs every statement of package flow in one query mode: a three-step request with
// a response carrying headers, its replay and a mismatch, an unknown outcome and its
// re-drive, a take-over by the completer, reconciliation, and purge.
func modeFlow(t *testing.T, db modeDB, _ string) {
	ctx := context.Background()
	_, err := db.check.Exec(ctx, `CREATE TABLE flow_orders (ref text PRIMARY KEY, state text NOT NULL)`)
	require.NoError(t, err)
	var calls atomic.Int64
	failCall := atomic.Bool{}
	f := flow.Flow{Name: "modes", Steps: []flow.Step{
		flow.Local("reserve", func(ctx context.Context, tx pgx.Tx, st *flow.State) ([]byte, error) {
			_, err := tx.Exec(ctx, `INSERT INTO flow_orders (ref, state) VALUES ($1, 'reserved')`, st.Key)
			return []byte(`{"reserved":true}`), err
		}),
		flow.Foreign("charge", func(_ context.Context, st *flow.State) ([]byte, error) {
			calls.Add(1)
			if failCall.Load() {
				return nil, errors.New("provider timed out")
			}
			return []byte(st.OutboundKey("charge")), nil
		}),
		flow.Local("confirm", func(ctx context.Context, tx pgx.Tx, st *flow.State) ([]byte, error) {
			charge, _ := st.Output("charge")
			if _, err := tx.Exec(ctx, `UPDATE flow_orders SET state = 'confirmed' WHERE ref = $1`, st.Key); err != nil {
				return nil, err
			}
			return nil, flow.Finish(dedupe.Response{Status: 201, Header: map[string][]string{"Content-Type": {"application/json"}}, Body: charge})
		}),
	}}
	r, err := flow.New(db.pool, []flow.Flow{f}, &flow.Options{Lease: 2 * time.Second})
	require.NoError(t, err)
	req := dedupe.Request{Scope: "modes", Key: "k1", Fingerprint: []byte{1}}

	first, err := r.Run(ctx, "modes", req, []byte("input"))
	require.NoError(t, err)
	again, err := r.Run(ctx, "modes", req, []byte("input"))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response)
	_, err = r.Run(ctx, "modes", dedupe.Request{Scope: "modes", Key: "k1", Fingerprint: []byte{2}}, nil)
	assert.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)

	failCall.Store(true)
	req2 := dedupe.Request{Scope: "modes", Key: "k2"}
	_, err = r.Run(ctx, "modes", req2, nil)
	require.ErrorIs(t, err, flow.ErrUnfinished)
	failCall.Store(false)
	// The lease was given back: the completer takes the request over and finishes it.
	cr, err := r.Complete(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, cr.Finished)
	res, err := r.Run(ctx, "modes", req2, nil)
	require.NoError(t, err)
	assert.True(t, res.Replayed())
	assert.EqualValues(t, 3, calls.Load())

	// Past the window: reconciliation, then Resolve.
	_, err = db.check.Exec(ctx, `INSERT INTO flow_requests (scope, key, flow, seed, locked_until, redrive_until, expires_at)
		VALUES ('modes', 'k3', 'modes', decode(repeat('ab', 32), 'hex'), now() - interval '1 minute', now() - interval '1 second', now() + interval '1 hour')`)
	require.NoError(t, err)
	_, err = r.Run(ctx, "modes", dedupe.Request{Scope: "modes", Key: "k3"}, nil)
	assert.ErrorIs(t, err, flow.ErrReconcile)
	list, err := r.ListReconcile(ctx, 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.NoError(t, r.Resolve(ctx, "modes", "k3", dedupe.Response{Status: 500, Header: map[string][]string{"X-Resolved": {"yes"}}}))
	res, err = r.Run(ctx, "modes", dedupe.Request{Scope: "modes", Key: "k3"}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"yes"}, res.Response.Header["X-Resolved"])

	_, err = db.check.Exec(ctx, `UPDATE flow_requests SET redrive_until = now() - interval '2 seconds', expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	n, err := r.Purge(ctx, 2)
	require.NoError(t, err)
	assert.EqualValues(t, 3, n)
	assert.Zero(t, count(t, db.check, `SELECT count(*) FROM flow_steps`), "steps go with their request")
}
