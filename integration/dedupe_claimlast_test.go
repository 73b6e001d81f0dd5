package integration_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
)

// Claim-last: concurrent duplicates may all run the function, but exactly one commits its
// effect, and every caller gets that one's response.
func TestClaimLastSameKeyConcurrently(t *testing.T) {
	t.Parallel()
	calls, pool := sameKeyAtOnce(t, dedupe.New(&dedupe.Options{ClaimLast: true}), 32)
	assert.GreaterOrEqual(t, calls, int64(1), "the function ran at least once")
	assert.Equal(t, 1, count(t, pool, `SELECT count(*) FROM dedupe_keys WHERE status = 201`))
}

// Claim-last keeps the core's outcomes: replay, mismatch, a function error frees the key, an
// expired key runs again, and a new key costs plain's round trips.
func TestClaimLastOutcomes(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	ctx := context.Background()
	d := dedupe.New(&dedupe.Options{ClaimLast: true, LockWait: 5 * time.Second})
	req := dedupe.Request{Scope: "cl", Key: "k", Fingerprint: []byte{1}}
	var calls atomic.Int64

	_, err := d.Do(ctx, db.Pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		_, _ = insertOrder(&calls, req.Key)(ctx, tx)
		return dedupe.Response{}, assert.AnError
	})
	require.ErrorIs(t, err, assert.AnError)
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`), "a failed function leaves no key")

	first, err := d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.False(t, first.Replayed())
	assert.WithinDuration(t, time.Now().Add(dedupe.DefaultTTL), first.ExpiresAt, time.Minute)
	again, err := d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response)
	_, err = d.Do(ctx, db.Pool, dedupe.Request{Scope: "cl", Key: "k", Fingerprint: []byte{2}}, insertOrder(&calls, req.Key))
	assert.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)

	_, err = db.Pool.Exec(ctx, `UPDATE dedupe_keys SET created_at = now() - interval '2 seconds', expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	re, err := d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.False(t, re.Replayed(), "an expired key runs again")
	assert.Equal(t, 2, count(t, db.Pool, `SELECT count(*) FROM orders`))
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))
}

// modeDedupeClaimLast is the claim-last path in one query mode: the lookup pipelined with
// BEGIN, the insert (jsonb headers as text) pipelined with COMMIT, a lost insert rolled back.
func modeDedupeClaimLast(t *testing.T, db modeDB, _ string) {
	ctx := context.Background()
	createOrders(t, db.check)
	d := dedupe.New(&dedupe.Options{ClaimLast: true, LockWait: 5 * time.Second})
	req := dedupe.Request{Scope: "modes", Key: "last", Fingerprint: []byte{1, 2, 3}}
	first, err := d.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err, "first execution inserts status, headers and body")
	again, err := d.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response, "headers and body replay as stored")

	// A key that another request commits while fn runs: the insert fails, fn's effect rolls
	// back, and the winner's response comes back.
	other := dedupe.New(nil)
	lost := dedupe.Request{Scope: "modes", Key: "lost"}
	res, err := d.Do(ctx, db.pool, lost, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		if _, err := other.Do(ctx, db.check, lost, insertOrder(nil, "winner")); err != nil {
			return dedupe.Response{}, err
		}
		return insertOrder(nil, "loser")(ctx, tx)
	})
	require.NoError(t, err)
	assert.True(t, res.Replayed(), "the winner's response")
	assert.Zero(t, count(t, db.check, `SELECT count(*) FROM orders WHERE request_key = 'loser'`), "the loser's effect rolled back")
	assert.Equal(t, 2, count(t, db.check, `SELECT count(*) FROM orders`))
}
