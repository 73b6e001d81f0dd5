package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/redisguard"
)

// ToolkitRedis is the dedupe core with the Redis guard in front.
func ToolkitRedis(pool *pgxpool.Pool, d *dedupe.Deduper, g *redisguard.Guard) Do {
	return viaRunner(pool, g.Wrap(d))
}

// LockAndCache is the approach common in blog posts, Redis only: SET lock NX EX, look for a
// cached result, run, cache the result, DEL the lock. Nothing in PostgreSQL knows the key, so
// when Redis loses the cache (failover, restart, eviction, FLUSHALL) a retry runs again.
func LockAndCache(pool *pgxpool.Pool, rdb redis.UniversalClient, prefix string) Do {
	return func(ctx context.Context, s Send) error {
		lock, cache := prefix+"lock:"+s.Key, prefix+"cache:"+s.Key
		ok, err := rdb.SetNX(ctx, lock, "1", 10*time.Second).Result()
		if err != nil {
			return err
		}
		if !ok {
			return ErrInProgress
		}
		defer rdb.Del(context.WithoutCancel(ctx), lock)
		if err := rdb.Get(ctx, cache).Err(); err == nil {
			return nil // replay from the cache
		} else if !errors.Is(err, redis.Nil) {
			return err
		}
		var id int64
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			id, err = insertOrder(ctx, tx, s)
			return err
		})
		if err != nil {
			return err
		}
		return rdb.Set(ctx, cache, fmt.Sprintf(`{"id":%d}`, id), 24*time.Hour).Err()
	}
}

// GuardCheck is one first-sighting check of the guard (a new key each time).
func GuardCheck(g *redisguard.Guard) Do {
	return func(ctx context.Context, s Send) error {
		_, err := g.Check(ctx, dedupe.Request{Scope: "bench.check", Key: s.Key})
		return err
	}
}

// BareIncr is the floor for a Redis round trip that marks a key: INCR.
func BareIncr(rdb redis.UniversalClient, prefix string) Do {
	return func(ctx context.Context, s Send) error {
		return rdb.Incr(ctx, prefix+"incr:"+s.Key).Err()
	}
}

// OurLock obtains and releases redisguard's lease lock (with its fencing token).
func OurLock(l *redisguard.Locker) Do {
	return func(ctx context.Context, s Send) error {
		lock, err := l.Obtain(ctx, s.Key, 10*time.Second, nil)
		if err != nil {
			return err
		}
		return lock.Release(ctx)
	}
}

// BSMLock obtains and releases bsm/redislock's lock.
func BSMLock(c *redislock.Client, prefix string) Do {
	return func(ctx context.Context, s Send) error {
		lock, err := c.Obtain(ctx, prefix+s.Key, 10*time.Second, nil)
		if err != nil {
			return err
		}
		return lock.Release(ctx)
	}
}

// RedsyncLock obtains and releases go-redsync's mutex on one node.
func RedsyncLock(rs *redsync.Redsync, prefix string) Do {
	return func(ctx context.Context, s Send) error {
		m := rs.NewMutex(prefix+s.Key, redsync.WithExpiry(10*time.Second), redsync.WithTries(1))
		if err := m.LockContext(ctx); err != nil {
			return err
		}
		_, err := m.UnlockContext(ctx)
		return err
	}
}

func newRedsync(rdb redis.UniversalClient) *redsync.Redsync {
	return redsync.New(redsyncgoredis.NewPool(rdb))
}
