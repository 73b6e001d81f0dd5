package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/pessimistic"
	"github.com/pgonce/pgonce/redisguard"
)

// 16 goroutines each increment a shared counter 500 times under the lock: the count is exact
// and the fencing tokens rise from hold to hold.
func TestLockCounterExact(t *testing.T) {
	t.Parallel()
	locker := newLocker(t, sharedRedis(t), &redisguard.LockerOptions{Prefix: harness.Prefix(t)})
	began := time.Now()
	counterUnderLock(t, locker, "counter", 16, 500, redisguard.ExponentialRetry(100*time.Microsecond, 2*time.Millisecond))
	t.Logf("16x500 holds in %v", time.Since(began))
}

// A holder paused past its TTL loses the lock: the next holder gets it with a larger fencing
// token; the late holder's release and refresh fail without touching the new lock; and its
// write is refused by the fence in PostgreSQL.
func TestLockExpiredHolderIsFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := harness.DB(t, nil)
	_, err := db.Pool.Exec(ctx, `CREATE TABLE reports (day text PRIMARY KEY, body text NOT NULL, writer bigint NOT NULL)`)
	require.NoError(t, err)
	// An explicit round timeout: by default it is TTL/10 (at least 50ms), and this test's
	// 200ms TTL would leave a loaded host 50ms per call, which is not what it is about.
	locker := newLocker(t, sharedRedis(t), &redisguard.LockerOptions{Prefix: harness.Prefix(t), Timeout: 5 * time.Second})
	write := func(lock *redisguard.Lock, body string) error {
		return pessimistic.FencedWrite(ctx, db.Pool, "report:day-1", lock.Token(), func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO reports VALUES ('day-1', $1, $2) ON CONFLICT (day) DO UPDATE SET body = $1, writer = $2`, body, lock.Token())
			return err
		})
	}

	ttl := 200 * time.Millisecond
	paused, err := locker.Obtain(ctx, "report:day-1", ttl, nil)
	require.NoError(t, err)
	_, err = locker.Obtain(ctx, "report:day-1", ttl, nil)
	require.ErrorIs(t, err, redisguard.ErrNotObtained, "held")

	time.Sleep(ttl + 50*time.Millisecond) // the holder pauses past its TTL
	assert.True(t, time.Now().After(paused.Expiry()), "its own estimate says the lease is over")

	fresh, err := locker.Obtain(ctx, "report:day-1", 10*time.Second, nil)
	require.NoError(t, err)
	assert.Greater(t, fresh.Token(), paused.Token())
	require.NoError(t, write(fresh, "fresh"))

	// The late holder wakes up.
	err = paused.Refresh(ctx, ttl)
	require.ErrorIs(t, err, redisguard.ErrNotHeld)
	err = paused.Release(ctx)
	require.ErrorIs(t, err, redisguard.ErrNotHeld)
	var lerr *redisguard.LockError
	require.ErrorAs(t, err, &lerr)
	assert.Equal(t, "report:day-1", lerr.Name)
	left, err := paused.TTL(ctx)
	require.NoError(t, err)
	assert.Zero(t, left)

	left, err = fresh.TTL(ctx)
	require.NoError(t, err)
	assert.Greater(t, left, 9*time.Second, "the new holder's lock is intact, TTL untouched")
	_, err = locker.Obtain(ctx, "report:day-1", ttl, nil)
	require.ErrorIs(t, err, redisguard.ErrNotObtained, "still held by the new holder")

	err = write(paused, "stale")
	require.ErrorIs(t, err, pessimistic.ErrStaleToken)
	var body string
	var writer int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT body, writer FROM reports`).Scan(&body, &writer))
	assert.Equal(t, "fresh", body)
	assert.Equal(t, fresh.Token(), writer)
	require.NoError(t, fresh.Release(ctx))
}

// Retry strategies: none fails at once; linear and exponential wait for the release; the
// context bounds every strategy; LimitRetry stops after n retries.
func TestLockRetryStrategies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	locker := newLocker(t, sharedRedis(t), &redisguard.LockerOptions{Prefix: harness.Prefix(t)})
	held, err := locker.Obtain(ctx, "job", time.Minute, nil)
	require.NoError(t, err)

	_, err = locker.Obtain(ctx, "job", time.Minute, &redisguard.LockOptions{Retry: redisguard.NoRetry()})
	require.ErrorIs(t, err, redisguard.ErrNotObtained)

	began := time.Now()
	_, err = locker.Obtain(ctx, "job", time.Minute, &redisguard.LockOptions{Retry: redisguard.LimitRetry(redisguard.LinearRetry(20*time.Millisecond), 3)})
	require.ErrorIs(t, err, redisguard.ErrNotObtained)
	assert.GreaterOrEqual(t, time.Since(began), 60*time.Millisecond, "three retries 20ms apart")

	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	began = time.Now()
	_, err = locker.Obtain(short, "job", time.Minute, &redisguard.LockOptions{Retry: redisguard.ExponentialRetry(time.Millisecond, 20*time.Millisecond)})
	require.ErrorIs(t, err, redisguard.ErrNotObtained)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(began), time.Second, "bounded by the context")

	for name, retry := range map[string]redisguard.RetryStrategy{
		"linear":      redisguard.LinearRetry(5 * time.Millisecond),
		"exponential": redisguard.ExponentialRetry(time.Millisecond, 20*time.Millisecond),
	} {
		got := make(chan *redisguard.Lock, 1)
		errc := make(chan error, 1)
		go func() {
			lock, err := locker.Obtain(ctx, "job", time.Minute, &redisguard.LockOptions{Retry: retry})
			got <- lock
			errc <- err
		}()
		require.NoError(t, held.Release(ctx), name)
		require.NoError(t, <-errc, name)
		held = <-got
		assert.Greater(t, held.Token(), int64(0))
	}
	require.NoError(t, held.Release(ctx))
}

// Re-entering with the same owner token: same fencing token, counted entries, the last
// release frees the lock; other owners stay out throughout.
func TestLockReentrant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	locker := newLocker(t, sharedRedis(t), &redisguard.LockerOptions{Prefix: harness.Prefix(t)})
	outer, err := locker.Obtain(ctx, "account:7", time.Minute, &redisguard.LockOptions{Owner: "worker-1/job-99"})
	require.NoError(t, err)
	assert.False(t, outer.Reentered())
	inner, err := locker.Obtain(ctx, "account:7", time.Minute, &redisguard.LockOptions{Owner: outer.Owner()})
	require.NoError(t, err)
	assert.True(t, inner.Reentered())
	assert.Equal(t, outer.Token(), inner.Token(), "a re-entry shares the hold's token")

	_, err = locker.Obtain(ctx, "account:7", time.Minute, nil)
	require.ErrorIs(t, err, redisguard.ErrNotObtained)
	require.NoError(t, inner.Release(ctx))
	require.ErrorIs(t, inner.Release(ctx), redisguard.ErrNotHeld, "one release per entry")
	_, err = locker.Obtain(ctx, "account:7", time.Minute, nil)
	require.ErrorIs(t, err, redisguard.ErrNotObtained, "the outer entry still holds it")

	require.NoError(t, outer.Release(ctx))
	next, err := locker.Obtain(ctx, "account:7", time.Minute, nil)
	require.NoError(t, err)
	assert.Greater(t, next.Token(), outer.Token())
	require.NoError(t, next.Release(ctx))
}

// A hold that expired cannot touch a later hold of the same owner: Release, Refresh and TTL
// of the old Lock compare its fencing token too, so they report ErrNotHeld (zero TTL) and
// leave the new hold as it was. Expiry is simulated by deleting the lock key, which is what
// Redis does when the TTL runs out.
func TestLockExpiredHoldSparesNewerHoldOfSameOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := sharedRedis(t)
	prefix := harness.Prefix(t)
	locker := newLocker(t, client, &redisguard.LockerOptions{Prefix: prefix})
	same := &redisguard.LockOptions{Owner: "X"}

	old, err := locker.Obtain(ctx, "job", time.Minute, same)
	require.NoError(t, err)
	require.NoError(t, client.Del(ctx, prefix+"{job}").Err(), "the old hold's lease runs out")
	fresh, err := locker.Obtain(ctx, "job", time.Minute, same)
	require.NoError(t, err)
	require.False(t, fresh.Reentered(), "a new hold, not a re-entry")
	require.Greater(t, fresh.Token(), old.Token())
	before, err := client.PTTL(ctx, prefix+"{job}").Result()
	require.NoError(t, err)

	require.ErrorIs(t, old.Refresh(ctx, time.Hour), redisguard.ErrNotHeld)
	ttl, err := old.TTL(ctx)
	require.NoError(t, err)
	assert.Zero(t, ttl, "the old hold holds nothing")
	require.ErrorIs(t, old.Release(ctx), redisguard.ErrNotHeld)

	after, err := client.PTTL(ctx, prefix+"{job}").Result()
	require.NoError(t, err)
	assert.LessOrEqual(t, after, before, "the refresh did not extend the new hold")
	_, err = locker.Obtain(ctx, "job", time.Minute, &redisguard.LockOptions{Owner: "Y"})
	require.ErrorIs(t, err, redisguard.ErrNotObtained, "the new hold still stands")
	ttl, err = fresh.TTL(ctx)
	require.NoError(t, err)
	assert.Positive(t, ttl)
	require.NoError(t, fresh.Release(ctx))
}

// The watchdog keeps a lock past 3xTTL while the holder works: nobody else obtains it
// meanwhile, and the work's context stays alive.
func TestWatchdogKeepsLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// TTL and timeout leave room for a loaded host: with 300ms (a 30ms refresh timeout) a
	// refresh delayed by the scheduler lost the lock, which is what the watchdog promises to
	// do when Redis is that slow, not what this test is about.
	locker := newLocker(t, sharedRedis(t), &redisguard.LockerOptions{Prefix: harness.Prefix(t), Timeout: 500 * time.Millisecond})
	ttl := 2 * time.Second
	lock, err := locker.Obtain(ctx, "long-job", ttl, nil)
	require.NoError(t, err)
	work, stop := lock.Watch(ctx)
	defer stop()

	deadline := time.NewTimer(5 * ttl / 2) // the work outlives the TTL, over several refreshes
	defer deadline.Stop()
	tick := time.NewTicker(ttl / 5)
	defer tick.Stop()
	attempts := 0
	for done := false; !done; {
		select {
		case <-deadline.C:
			done = true
		case <-work.Done():
			t.Fatalf("work cancelled: %v", context.Cause(work))
		case <-tick.C:
			_, err := locker.Obtain(ctx, "long-job", ttl, nil)
			require.ErrorIs(t, err, redisguard.ErrNotObtained, "someone else got the lock at attempt %d", attempts)
			attempts++
		}
	}
	left, err := lock.TTL(ctx)
	require.NoError(t, err)
	assert.Positive(t, left)
	assert.NoError(t, work.Err())
	stop()
	require.NoError(t, lock.Release(ctx))
	assert.ErrorIs(t, work.Err(), context.Canceled, "stop cancels the work context")
}

// When Redis stops, the next refresh fails and the watchdog cancels the work, with
// ErrLockLost as the cause, before the lease would have run out.
func TestWatchdogCancelsWhenRedisStops(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	ctx := context.Background()
	locker := newLocker(t, srv.Client(), &redisguard.LockerOptions{Timeout: 500 * time.Millisecond})
	ttl := 2 * time.Second
	lock, err := locker.Obtain(ctx, "job", ttl, nil)
	require.NoError(t, err)
	work, stop := lock.Watch(ctx)
	defer stop()

	srv.Stop()
	stoppedAt := time.Now()
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("work not cancelled")
	}
	took := time.Since(stoppedAt)
	cause := context.Cause(work)
	require.ErrorIs(t, cause, redisguard.ErrLockLost)
	assert.Less(t, took, ttl, "cancelled before the lease ran out")
	t.Logf("work cancelled %v after Redis stopped (TTL %v): %v", took, ttl, cause)
}

// A refresh that hangs (Redis paused, client without context deadlines) does not keep the
// work going: the watchdog cancels it when the lease's validity runs out.
func TestWatchdogCancelsWhenRefreshHangs(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	ctx := context.Background()
	hanging := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: time.Second}) // ignores context deadlines
	t.Cleanup(func() { _ = hanging.Close() })
	locker := newLocker(t, hanging, nil)
	ttl := time.Second // leaves the timer a second of scheduling slack on a loaded host
	lock, err := locker.Obtain(ctx, "job", ttl, nil)
	require.NoError(t, err)
	work, stop := lock.Watch(ctx)
	defer stop()

	require.NoError(t, srv.Client().Do(ctx, "CLIENT", "PAUSE", "5000", "ALL").Err())
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("work not cancelled")
	}
	require.ErrorIs(t, context.Cause(work), redisguard.ErrLockLost)
	assert.False(t, time.Now().Before(lock.Expiry()), "cancelled at the end of the lease, not later than needed")
	assert.WithinDuration(t, lock.Expiry(), time.Now(), ttl, "and not much later")
}

// Locks and their arguments are checked before any round trip.
func TestLockInvalidArguments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	locker := newLocker(t, sharedRedis(t), nil)
	for _, c := range []struct {
		key string
		ttl time.Duration
	}{{"", time.Second}, {"}x", time.Second}, {"k", 0}} {
		_, err := locker.Obtain(ctx, c.key, c.ttl, nil)
		assert.ErrorIs(t, err, redisguard.ErrInvalid, "%q %v", c.key, c.ttl)
	}
	_, err := redisguard.NewLocker(sharedRedis(t), &redisguard.LockerOptions{Prefix: "a{b}:"})
	assert.ErrorIs(t, err, redisguard.ErrInvalid, "refused by the constructor, not on the first Obtain")
	_, err = redisguard.NewLocker(nil, nil)
	assert.ErrorIs(t, err, redisguard.ErrInvalid)
	_, err = redisguard.NewQuorumLocker(nil, nil)
	assert.ErrorIs(t, err, redisguard.ErrInvalid)
	_, err = redisguard.NewGuard(nil, nil)
	assert.ErrorIs(t, err, redisguard.ErrInvalid, "a nil client is refused by the constructor")
	_, err = redisguard.NewGuard(sharedRedis(t), &redisguard.GuardOptions{Policy: 7})
	assert.ErrorIs(t, err, redisguard.ErrInvalid, "an unknown policy")
}

// Redis restarts without persistence and loses the fencing counter: tokens still rise,
// because the counter never goes below the server clock in microseconds.
func TestLockTokensRiseAfterRedisRestart(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	ctx := context.Background()
	locker := newLocker(t, srv.Client(), nil)
	before, err := locker.Obtain(ctx, "report", time.Minute, nil)
	require.NoError(t, err)
	srv.Restart() // the lock and its counter are gone
	after, err := locker.Obtain(ctx, "report", time.Minute, nil)
	require.NoError(t, err, "the restarted server forgot the lock")
	assert.Greater(t, after.Token(), before.Token())
	require.ErrorIs(t, before.Release(ctx), redisguard.ErrNotHeld)
	require.NoError(t, after.Release(ctx))
}
