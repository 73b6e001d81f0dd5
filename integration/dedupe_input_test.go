package integration_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
)

// Bad input gets a typed error before any SQL runs, and nothing is written.
func TestBadInput(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(nil)
	var calls atomic.Int64
	fn := insertOrder(&calls, "bad")
	ok := dedupe.Request{Scope: "orders", Key: "k"}
	with := func(change func(*dedupe.Request)) dedupe.Request { r := ok; change(&r); return r }
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	closed, err := pgxpool.New(context.Background(), db.URL)
	require.NoError(t, err)
	closed.Close()
	var nilPool *pgxpool.Pool

	for _, tc := range []struct {
		name string
		ctx  context.Context
		db   dedupe.DB
		req  dedupe.Request
		fn   dedupe.Func
		want error
	}{
		{"empty key", nil, nil, with(func(r *dedupe.Request) { r.Key = "" }), nil, dedupe.ErrInvalidKey},
		{"key over limit", nil, nil, with(func(r *dedupe.Request) { r.Key = strings.Repeat("k", dedupe.MaxKeyLen+1) }), nil, dedupe.ErrInvalidKey},
		{"key invalid UTF-8", nil, nil, with(func(r *dedupe.Request) { r.Key = "k\xff" }), nil, dedupe.ErrInvalidKey},
		{"key with NUL", nil, nil, with(func(r *dedupe.Request) { r.Key = "k\x00" }), nil, dedupe.ErrInvalidKey},
		{"empty scope", nil, nil, with(func(r *dedupe.Request) { r.Scope = "" }), nil, dedupe.ErrInvalidScope},
		{"scope over limit", nil, nil, with(func(r *dedupe.Request) { r.Scope = strings.Repeat("s", dedupe.MaxScopeLen+1) }), nil, dedupe.ErrInvalidScope},
		{"fingerprint over limit", nil, nil, with(func(r *dedupe.Request) { r.Fingerprint = make([]byte, dedupe.MaxFingerprintLen+1) }), nil, dedupe.ErrInvalidFingerprint},
		{"negative TTL", nil, nil, with(func(r *dedupe.Request) { r.TTL = -1 }), nil, dedupe.ErrInvalidTTL},
		{"nil function", nil, nil, ok, func() dedupe.Func { return nil }(), dedupe.ErrNilFunc},
		{"nil pool", nil, nilPool, ok, nil, dedupe.ErrNilDB},
		{"cancelled context", cancelled, nil, ok, nil, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, h, f := tc.ctx, tc.db, tc.fn
			if ctx == nil {
				ctx = context.Background()
			}
			if h == nil && tc.name != "nil pool" {
				h = db.Pool
			}
			if f == nil && tc.name != "nil function" {
				f = fn
			}
			_, err := d.Do(ctx, h, tc.req, f)
			require.ErrorIs(t, err, tc.want)
			if tc.want != context.Canceled {
				assert.ErrorIs(t, err, dedupe.ErrInvalid, "every input error matches ErrInvalid")
			}
		})
	}
	t.Run("closed pool", func(t *testing.T) {
		_, err := d.Do(context.Background(), closed, ok, fn)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "closed")
	})
	t.Run("limits are inclusive", func(t *testing.T) {
		edge := dedupe.Request{Scope: strings.Repeat("s", dedupe.MaxScopeLen), Key: strings.Repeat("é", dedupe.MaxKeyLen/2), Fingerprint: make([]byte, dedupe.MaxFingerprintLen)}
		_, err := d.Do(context.Background(), db.Pool, edge, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			return dedupe.Response{Status: 200}, nil
		})
		require.NoError(t, err)
		_, err = db.Pool.Exec(context.Background(), `DELETE FROM dedupe_keys`)
		require.NoError(t, err)
	})
	assert.Zero(t, calls.Load(), "the function never ran")
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys`))
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM orders`))
}

// The schema refuses what the Go checks refuse, for rows written by other code.
func TestSchemaConstraints(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	for name, sql := range map[string]string{
		"empty key":        `INSERT INTO dedupe_keys (scope, key, expires_at) VALUES ('s', '', now() + interval '1 day')`,
		"long key":         `INSERT INTO dedupe_keys (scope, key, expires_at) VALUES ('s', repeat('k', 256), now() + interval '1 day')`,
		"long scope":       `INSERT INTO dedupe_keys (scope, key, expires_at) VALUES (repeat('s', 513), 'k', now() + interval '1 day')`,
		"long fingerprint": `INSERT INTO dedupe_keys (scope, key, fingerprint, expires_at) VALUES ('s', 'k', decode(repeat('00', 65), 'hex'), now() + interval '1 day')`,
		"expired at birth": `INSERT INTO dedupe_keys (scope, key, expires_at) VALUES ('s', 'k', now() - interval '1 second')`,
		"headers array":    `INSERT INTO dedupe_keys (scope, key, headers, expires_at) VALUES ('s', 'k', '[]', now() + interval '1 day')`,
	} {
		_, err := db.Pool.Exec(context.Background(), sql)
		assert.ErrorContains(t, err, "23514", name) // check_violation
		// The generations layout's tables carry the same constraint (migration 0005).
		_, err = db.Pool.Exec(context.Background(), strings.Replace(sql, "INTO dedupe_keys ", "INTO dedupe_keys_g1 ", 1))
		assert.ErrorContains(t, err, "23514", name+", generations layout")
	}
	// A valid row still goes in, in both layouts' tables.
	for _, table := range []string{"dedupe_keys", "dedupe_keys_g1"} {
		_, err := db.Pool.Exec(context.Background(), `INSERT INTO `+table+` (scope, key, fingerprint, status, headers, body, expires_at)
			VALUES ('s', 'ok', '\x00', 201, '{"A": ["b"]}', '\x', now() + interval '1 day')`)
		assert.NoError(t, err, table)
	}
}
