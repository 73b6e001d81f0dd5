package integration_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/redisguard"
)

const cardNumber = "4111 1111 1111 1111"

// cardResponse is a response whose body holds personal data.
func cardResponse(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO orders (request_key) VALUES ('card')`); err != nil {
		return dedupe.Response{}, err
	}
	return dedupe.Response{Status: 201, Body: []byte(`{"card":"` + cardNumber + `"}`)}, nil
}

// guardValues returns every value under prefix in Redis.
func guardValues(t *testing.T, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	c := sharedRedis(t)
	keys, err := c.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	var vals []string
	for _, k := range keys {
		v, err := c.Get(ctx, k).Result()
		require.NoError(t, err)
		vals = append(vals, v)
	}
	return vals
}

// guardOver runs Guard.Do with the Deduper as its runner.
type guardOver struct {
	g *redisguard.Guard
	d *dedupe.Deduper
}

func (o guardOver) Do(ctx context.Context, db dedupe.DB, req dedupe.Request, fn dedupe.Func) (dedupe.Result, error) {
	return o.g.Do(ctx, o.d, db, req, fn)
}

// With a body codec on the Deduper, the guard in front seals what it caches with it: Redis
// never holds the body in plain text, and a retry is still replayed from Redis, in plain
// text to the caller. The same holds through Wrap (the runner dedupehttp gets) and for Check
// and Commit by hand with GuardOptions.BodyCodec.
func TestGuardSealsCachedBodiesWithTheCodec(t *testing.T) {
	t.Parallel()
	codec, err := dedupe.NewAESGCM([]byte("0123456789abcdef0123456789abcdef"))
	require.NoError(t, err)
	d := dedupe.New(&dedupe.Options{BodyCodec: codec})

	for name, runner := range map[string]func(g *redisguard.Guard) dedupe.Runner{
		"Do":   func(g *redisguard.Guard) dedupe.Runner { return guardOver{g, d} },
		"Wrap": func(g *redisguard.Guard) dedupe.Runner { return g.Wrap(d) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := harness.DB(t, nil)
			createOrders(t, db.Pool)
			prefix := harness.Prefix(t)
			g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: prefix, Timeout: guardTimeout})
			r := runner(g)
			req := dedupe.Request{Scope: "cards", Key: "k", Fingerprint: []byte("fp")}

			first, err := r.Do(ctx, db.Pool, req, cardResponse)
			require.NoError(t, err)
			require.False(t, first.Replayed())
			for _, v := range guardValues(t, prefix) {
				assert.NotContains(t, v, cardNumber, "Redis holds the body in plain text")
			}
			again, err := r.Do(ctx, db.Pool, req, cardResponse)
			require.NoError(t, err)
			assert.Equal(t, dedupe.SourceRedis, again.Source)
			assert.Equal(t, first.Response, again.Response, "replayed in plain text")
		})
	}

	t.Run("Commit by hand", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		prefix := harness.Prefix(t)
		g := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: prefix, BodyCodec: codec, Timeout: guardTimeout})
		req := dedupe.Request{Scope: "cards", Key: "k", Fingerprint: []byte("fp")}
		s, err := g.Check(ctx, req)
		require.NoError(t, err)
		require.Equal(t, redisguard.StateFirst, s.State)
		body := []byte(`{"card":"` + cardNumber + `"}`)
		require.NoError(t, s.Commit(ctx, dedupe.Result{Response: dedupe.Response{Status: 201, Body: body}}))
		for _, v := range guardValues(t, prefix) {
			assert.False(t, strings.Contains(v, cardNumber), "Redis holds the body in plain text")
		}
		s, err = g.Check(ctx, req)
		require.NoError(t, err)
		require.Equal(t, redisguard.StateCached, s.State)
		assert.Equal(t, body, s.Response.Body)

		// A guard with another secret cannot open it, and sends the request to PostgreSQL.
		other, err := dedupe.NewAESGCM([]byte("fedcba9876543210fedcba9876543210"))
		require.NoError(t, err)
		g2 := newGuard(t, sharedRedis(t), &redisguard.GuardOptions{Prefix: prefix, BodyCodec: other, Timeout: guardTimeout})
		s, err = g2.Check(ctx, req)
		require.NoError(t, err)
		assert.Equal(t, redisguard.StateCommitted, s.State)
	})
}

// A response the guard caches never outlives the key row in PostgreSQL: when Redis lost the
// key and the retry is replayed from PostgreSQL, the new cache entry expires with the row
// (Result.ExpiresAt), not CacheTTL from now.
func TestGuardCacheNeverOutlivesTheKeyRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	prefix := harness.Prefix(t)
	client := sharedRedis(t)
	g := newGuard(t, client, &redisguard.GuardOptions{Prefix: prefix, Timeout: guardTimeout})
	d := dedupe.New(nil)
	req := dedupe.Request{Scope: "orders.create", Key: "k", Fingerprint: []byte("fp"), TTL: time.Hour}

	first, err := g.Do(ctx, d, db.Pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Hour), first.ExpiresAt, time.Minute)

	// Most of the key's life has passed in PostgreSQL; Redis lost its keys.
	_, err = db.Pool.Exec(ctx, `UPDATE dedupe_keys SET created_at = now() - interval '1 hour', expires_at = now() + interval '20 seconds'`)
	require.NoError(t, err)
	keys, err := client.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.NoError(t, client.Del(ctx, keys...).Err())

	again, err := g.Do(ctx, d, db.Pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	require.True(t, again.Replayed())
	require.NotEqual(t, dedupe.SourceRedis, again.Source, "replayed by PostgreSQL")
	assert.WithinDuration(t, time.Now().Add(20*time.Second), again.ExpiresAt, 5*time.Second)
	assert.False(t, again.ExpiresAt.After(time.Now().Add(20*time.Second)), "never later than the row's expiry")

	pttl, err := client.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.Positive(t, pttl, "the PostgreSQL replay is cached")
	assert.LessOrEqual(t, pttl, 20*time.Second, "the cache expires with the row, not an hour from now")
}

// A guard in front of a Deduper passes the Deduper's response limit on, so dedupehttp's
// default limit is the Deduper's whether or not the guard is in front.
func TestGuardWrapReportsRunnerLimits(t *testing.T) {
	g := newGuard(t, sharedRedis(t), nil)
	wrapped := g.Wrap(dedupe.New(&dedupe.Options{MaxResponseBytes: 64}))
	l, ok := wrapped.(interface{ MaxResponseBytes() int })
	require.True(t, ok)
	assert.Equal(t, 64, l.MaxResponseBytes())
	bare := g.Wrap(silentRunner{})
	assert.Zero(t, bare.(interface{ MaxResponseBytes() int }).MaxResponseBytes(), "a runner that reports no limit")
}

// silentRunner is a dedupe.Runner that reports no limits.
type silentRunner struct{}

func (silentRunner) Do(context.Context, dedupe.DB, dedupe.Request, dedupe.Func) (dedupe.Result, error) {
	return dedupe.Result{}, nil
}
