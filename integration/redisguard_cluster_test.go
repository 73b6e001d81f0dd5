package integration_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/redisguard"
)

// The guard, tokens and the lock on a 3-master Redis Cluster: every script's keys hash to
// one slot (no CROSSSLOT), so the same tests as on a single node pass, for lock names that
// land on each of the masters.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: harness.RedisClusterAddrs(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	require.NoError(t, rdb.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }))
	prefix := harness.Prefix(t)

	t.Run("GuardFirstSighting", func(t *testing.T) {
		checkFirstSightingOnce(t, rdb, prefix, 64)
	})

	t.Run("GuardDo", func(t *testing.T) {
		db := harness.DB(t, &pgtest.Options{MaxConns: 4})
		createOrders(t, db.Pool)
		g := newGuard(t, rdb, &redisguard.GuardOptions{Prefix: prefix, Timeout: 5 * time.Second})
		d := dedupe.New(nil)
		var calls atomic.Int64
		for _, key := range []string{"a", "b", "c", "d", "e", "f"} { // spread over the masters
			req := dedupe.Request{Scope: "orders", Key: key}
			first, err := g.Do(ctx, d, db.Pool, req, insertOrder(&calls, key))
			require.NoError(t, err)
			again, err := g.Do(ctx, d, db.Pool, req, insertOrder(&calls, key))
			require.NoError(t, err)
			assert.Equal(t, dedupe.SourceRedis, again.Source, key)
			assert.Equal(t, first.Response, again.Response)
		}
		assert.Equal(t, int64(6), calls.Load())
	})

	t.Run("TokenConsumedOnce", func(t *testing.T) {
		consumeOnce(t, rdb, prefix, 32)
	})

	t.Run("Lock", func(t *testing.T) {
		locker := newLocker(t, rdb, &redisguard.LockerOptions{Prefix: prefix + "lock:"})
		slots := map[int64]bool{}
		for _, key := range []string{"a", "b", "c", "report:2026-11-22", "x}y"} {
			keys := []string{prefix + "lock:{" + key + "}", prefix + "lock:{" + key + "}:fence"}
			s0, err := rdb.ClusterKeySlot(ctx, keys[0]).Result()
			require.NoError(t, err)
			s1, err := rdb.ClusterKeySlot(ctx, keys[1]).Result()
			require.NoError(t, err)
			require.Equal(t, s0, s1, "lock and counter of %q share a slot", key)
			slots[s0] = true

			lock, err := locker.Obtain(ctx, key, 10*time.Second, nil)
			require.NoError(t, err, key)
			_, err = locker.Obtain(ctx, key, 10*time.Second, nil)
			require.ErrorIs(t, err, redisguard.ErrNotObtained, key)
			inner, err := locker.Obtain(ctx, key, 10*time.Second, &redisguard.LockOptions{Owner: lock.Owner()})
			require.NoError(t, err, key)
			assert.Equal(t, lock.Token(), inner.Token())
			require.NoError(t, inner.Refresh(ctx, 10*time.Second))
			left, err := lock.TTL(ctx)
			require.NoError(t, err)
			assert.Positive(t, left)
			require.NoError(t, inner.Release(ctx))
			require.NoError(t, lock.Release(ctx))
			next, err := locker.Obtain(ctx, key, 10*time.Second, nil)
			require.NoError(t, err, key)
			assert.Greater(t, next.Token(), lock.Token())
			require.NoError(t, next.Release(ctx))
		}
		assert.Greater(t, len(slots), 1)
		counterUnderLock(t, locker, "counter", 8, 100, redisguard.ExponentialRetry(100*time.Microsecond, 2*time.Millisecond))
	})
}
