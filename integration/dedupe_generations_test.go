package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/migrations"
)

// genKeys counts the keys in the three generation tables, with args as a WHERE on them.
const genKeysSQL = `SELECT count(*) FROM (
	SELECT scope, key FROM dedupe_keys_g0 UNION ALL SELECT scope, key FROM dedupe_keys_g1
	UNION ALL SELECT scope, key FROM dedupe_keys_g2) k`

// forceDue makes the current generation due for rotation now, whatever rotate_every says.
// Tests use it to rotate many times in a second; it is safe for them because every key they
// check is claimed and duplicated within one rotation (a real deployment waits rotate_every,
// which exceeds every key's TTL).
func forceDue(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `UPDATE dedupe_generations SET started_at = '-infinity'`)
	require.NoError(t, err)
}

func generation(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var g int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT current FROM dedupe_generations`).Scan(&g))
	return g
}

// The boundary promise of the generations layout: duplicates of keys claimed just before a
// rotation, sent before and after it, meet the first claim, whether it is still uncommitted
// when the rotation commits (odd rounds) or committed before it (even rounds). Each round
// rotates once, then truncates the dead generation.
func TestGenerationsBoundary(t *testing.T) {
	t.Parallel()
	const rounds = 6
	db := harness.DB(t, &pgtest.Options{MaxConns: boundaryConns + 4})
	createOrders(t, db.Pool)
	d := dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations})
	pgtest.Warm(t, db.Pool, boundaryConns)
	for round := range rounds {
		boundaryRound(t, d, db.Pool, round)
	}
	assert.Equal(t, rounds*boundaryKeys, count(t, db.Pool, `SELECT count(*) FROM orders`), "one order per key")
	// Round r claims in generation r and rotates to r+1, which makes generation r-1 dead.
	assert.Equal(t, boundaryKeys, count(t, db.Pool, genKeysSQL), "the last round's keys live; older ones were truncated")
}

// Per round of TestGenerationsBoundary: keys, and duplicates of each sent before and after the
// rotation (besides the first claim).
const (
	boundaryKeys, boundaryBefore, boundaryAfter = 8, 3, 3
	boundaryConns                               = boundaryKeys * (1 + boundaryBefore + boundaryAfter)
)

func boundaryRound(t *testing.T, d *dedupe.Deduper, pool *pgxpool.Pool, round int) {
	t.Helper()
	const keys, before, after = boundaryKeys, boundaryBefore, boundaryAfter
	ctx := context.Background()
	uncommitted := round%2 == 1
	g0 := generation(t, pool)
	var calls [keys]atomic.Int64
	entered := make(chan int, boundaryConns)
	rotated := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(rotated) }) }
	var wg sync.WaitGroup
	// On a failed require (a broken layout), the held claims still end before the test does.
	defer wg.Wait()
	defer release()
	fn := func(k int, key string) dedupe.Func {
		ins := insertOrder(&calls[k], key)
		return func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			resp, err := ins(ctx, tx)
			entered <- k
			if uncommitted {
				<-rotated // still holding the claim when the rotation commits
			}
			return resp, err
		}
	}
	type outcome struct {
		res dedupe.Result
		err error
	}
	var mu sync.Mutex
	outcomes := map[int][]outcome{}
	send := func(start <-chan struct{}, k int) {
		key := fmt.Sprintf("r%d-k%d", round, k)
		wg.Go(func() {
			<-start
			res, err := d.Do(ctx, pool, dedupe.Request{Scope: "gen", Key: key}, fn(k, key))
			mu.Lock()
			outcomes[k] = append(outcomes[k], outcome{res, err})
			mu.Unlock()
		})
	}
	// First claims and the duplicates sent before the rotation, from one barrier.
	pre := make(chan struct{})
	for k := range keys {
		for range 1 + before {
			send(pre, k)
		}
	}
	close(pre)
	for range keys { // every key claimed (in generation g0) before the rotation
		<-entered
	}
	if !uncommitted {
		waitOutcomes(t, &mu, outcomes, keys, 1+before)
	}
	forceDue(t, pool)
	var rot bool
	var g int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT rotated, generation FROM dedupe_gen_rotate()`).Scan(&rot, &g))
	require.True(t, rot)
	require.Equal(t, g0+1, g)
	post := make(chan struct{})
	for k := range keys {
		for range after {
			send(post, k)
		}
	}
	close(post)
	if uncommitted {
		// Every duplicate, from before and after the rotation, waits on its key's lock.
		// (A broken layout lets a duplicate run fn instead: stop waiting and let the checks
		// below report it.)
		waitAdvisoryWaiters(t, pool, keys*(before+after), func() bool { return len(entered) > 0 })
		release()
	}
	wg.Wait()
	for k := range keys {
		assert.Equal(t, int64(1), calls[k].Load(), "round %d key %d: executions", round, k)
		os := outcomes[k]
		require.Len(t, os, 1+before+after)
		first := 0
		for _, o := range os {
			require.NoError(t, o.err, "round %d key %d", round, k)
			if !o.res.Replayed() {
				first++
			}
			assert.Equal(t, os[0].res.Response, o.res.Response, "round %d key %d: every duplicate gets the stored response", round, k)
		}
		assert.Equal(t, 1, first, "round %d key %d: one first execution", round, k)
	}
	// Truncate the dead generation (round-1's keys), as Purge does after rotating.
	_, err := d.Purge(ctx, pool, 0)
	require.NoError(t, err)
}

// waitOutcomes waits until every key has n outcomes.
func waitOutcomes[T any](t *testing.T, mu *sync.Mutex, m map[int][]T, keys, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		done := len(m) == keys
		for _, os := range m {
			done = done && len(os) == n
		}
		mu.Unlock()
		if done {
			return
		}
		require.True(t, time.Now().Before(deadline), "outcomes did not arrive")
		time.Sleep(5 * time.Millisecond) // polling another process's progress; no channel to wait on
	}
}

// waitAdvisoryWaiters waits until n sessions wait for dedupe's key locks in this database, or
// until stop says there is no point waiting.
func waitAdvisoryWaiters(t *testing.T, pool *pgxpool.Pool, n int, stop func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND classid = 1886351214 AND objsubid = 2
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting))
		if waiting >= n || stop() {
			return
		}
		require.True(t, time.Now().Before(deadline), "%d of %d duplicates waiting", waiting, n)
		time.Sleep(5 * time.Millisecond) // polling the server's lock table
	}
}

// The generations layout keeps Do's other promises: replay, mismatch, freed key on error,
// expiry, bounded waits, joined transactions; and refuses what it cannot promise.
func TestGenerationsSemantics(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 8})
	createOrders(t, db.Pool)
	d := dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations})
	ctx := context.Background()
	req := dedupe.Request{Scope: "gen", Key: "k", Fingerprint: []byte{1}}
	var calls atomic.Int64

	first, err := d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	again, err := d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response)
	assert.WithinDuration(t, time.Now().Add(dedupe.DefaultTTL), again.ExpiresAt, time.Minute)
	_, err = d.Do(ctx, db.Pool, dedupe.Request{Scope: "gen", Key: "k", Fingerprint: []byte{2}}, insertOrder(&calls, req.Key))
	assert.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)
	assert.Equal(t, int64(1), calls.Load())

	// A rotation later the key is in the previous generation and still replays.
	forceDue(t, db.Pool)
	_, err = d.Purge(ctx, db.Pool, 0)
	require.NoError(t, err)
	again, err = d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed(), "found in the previous generation")
	assert.Equal(t, first.Response, again.Response)

	boom := errors.New("boom")
	_, err = d.Do(ctx, db.Pool, dedupe.Request{Scope: "gen", Key: "fails"}, func(context.Context, pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{}, boom
	})
	require.ErrorIs(t, err, boom)
	res, err := d.Do(ctx, db.Pool, dedupe.Request{Scope: "gen", Key: "fails"}, insertOrder(&calls, "fails"))
	require.NoError(t, err)
	assert.False(t, res.Replayed(), "the failed attempt left the key free")

	// Expired keys run again: in the current generation (re-claimed in place) and in the
	// previous one (claimed anew in the current one).
	short := dedupe.Request{Scope: "gen", Key: "short", TTL: time.Millisecond}
	_, err = d.Do(ctx, db.Pool, short, insertOrder(&calls, short.Key))
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `SELECT pg_sleep(0.01)`) // let the 1ms TTL pass on the server's clock
	require.NoError(t, err)
	res, err = d.Do(ctx, db.Pool, short, insertOrder(&calls, short.Key))
	require.NoError(t, err)
	assert.False(t, res.Replayed(), "expired in the current generation")
	_, err = db.Pool.Exec(ctx, `UPDATE dedupe_keys_g0 SET created_at = now() - interval '2 seconds', expires_at = now() - interval '1 second' WHERE key = 'k'`)
	require.NoError(t, err)
	res, err = d.Do(ctx, db.Pool, req, insertOrder(&calls, req.Key))
	require.NoError(t, err)
	assert.False(t, res.Replayed(), "expired in the previous generation")
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM dedupe_keys_g1 WHERE key = 'k'`), "claimed anew in the current generation")

	// A bounded wait ends with ErrInProgress while another transaction holds the key.
	h := holdKey(t, d, db.Pool, dedupe.Request{Scope: "gen", Key: "held"})
	<-h.claimed
	bounded := dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations, LockWait: 50 * time.Millisecond})
	_, err = bounded.Do(ctx, db.Pool, dedupe.Request{Scope: "gen", Key: "held"}, insertOrder(&calls, "held"))
	assert.ErrorIs(t, err, dedupe.ErrInProgress)
	h.release <- nil
	require.NoError(t, <-h.done)
	res, err = bounded.Do(ctx, db.Pool, dedupe.Request{Scope: "gen", Key: "held"}, insertOrder(&calls, "held"))
	require.NoError(t, err)
	assert.True(t, res.Replayed())

	// Joined: the key vanishes with the caller's rollback; the transaction stays usable.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = d.Do(ctx, tx, dedupe.Request{Scope: "gen", Key: "joined"}, insertOrder(&calls, "joined"))
	require.NoError(t, err)
	_, err = d.Do(ctx, tx, dedupe.Request{Scope: "gen", Key: "joined-fails"}, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		_, _ = tx.Exec(ctx, `SELECT 1/0`)
		return dedupe.Response{}, boom
	})
	require.ErrorIs(t, err, boom)
	require.NoError(t, tx.Rollback(ctx))
	assert.Zero(t, count(t, db.Pool, genKeysSQL+` WHERE key LIKE 'joined%'`))

	// Refused: a TTL beyond max_ttl, and isolation levels above READ COMMITTED.
	_, err = d.Do(ctx, db.Pool, dedupe.Request{Scope: "gen", Key: "long", TTL: 48 * time.Hour}, insertOrder(&calls, "long"))
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "22023", pgErr.Code)
	rr := dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations, TxOptions: pgx.TxOptions{IsoLevel: pgx.RepeatableRead}})
	_, err = rr.Do(ctx, db.Pool, dedupe.Request{Scope: "gen", Key: "rr"}, insertOrder(&calls, "rr"))
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "0A000", pgErr.Code)

	// Purge in a transaction is refused: the rotation must commit first.
	tx, err = db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = d.Purge(ctx, tx, 0)
	assert.ErrorIs(t, err, dedupe.ErrPurgeInTx)
	require.NoError(t, tx.Rollback(ctx))
}

// Purge rotates only when the generation is due, and truncates the dead generation.
func TestGenerationsPurge(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	d := dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations})
	ctx := context.Background()
	fill := func(table string, n int, expired bool) {
		exp := "now() + interval '1 hour'"
		if expired {
			exp = "now() - interval '1 second'"
		}
		_, err := db.Pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (scope, key, created_at, expires_at)
			SELECT 'fill', 'k' || i, now() - interval '2 hours', %s FROM generate_series(1, $1) i`, table, exp), n)
		require.NoError(t, err)
	}
	fill("dedupe_keys_g0", 100, false) // current (generation 0)
	fill("dedupe_keys_g1", 300, true)  // dead: truncated even before any rotation
	n, err := d.Purge(ctx, db.Pool, 0)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, int64(0))
	assert.Equal(t, int64(0), generation(t, db.Pool), "not due: rotate_every (25h) has not passed")
	assert.Equal(t, 100, count(t, db.Pool, genKeysSQL))

	forceDue(t, db.Pool)
	_, err = d.Purge(ctx, db.Pool, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(1), generation(t, db.Pool))
	assert.Equal(t, 100, count(t, db.Pool, genKeysSQL), "generation 0 is now the previous one, still live")
	forceDue(t, db.Pool)
	_, err = db.Pool.Exec(ctx, `ANALYZE dedupe_keys_g0`)
	require.NoError(t, err)
	n, err = d.Purge(ctx, db.Pool, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(2), generation(t, db.Pool))
	assert.Equal(t, int64(100), n, "estimate from pg_class after ANALYZE")
	assert.Zero(t, count(t, db.Pool, genKeysSQL), "generation 0 truncated")

	_, err = db.Pool.Exec(ctx, `UPDATE dedupe_generations SET rotate_every = max_ttl`)
	assert.Error(t, err, "rotate_every must exceed max_ttl")
}

// modeDedupeGenerations is modeDedupe on the generations layout.
func modeDedupeGenerations(t *testing.T, db modeDB, _ string) {
	ctx := context.Background()
	createOrders(t, db.check)
	d := dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations, LockWait: 5 * time.Second})
	req := dedupe.Request{Scope: "modes", Key: "k1", Fingerprint: []byte{1, 2, 3}}
	first, err := d.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	again, err := d.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response, "headers and body replay as stored")
	_, err = d.Do(ctx, db.pool, dedupe.Request{Scope: "modes", Key: "k1", Fingerprint: []byte{9}}, insertOrder(nil, req.Key))
	assert.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		_, err := d.Do(ctx, tx, dedupe.Request{Scope: "modes", Key: "joined"}, insertOrder(nil, "joined"))
		return err
	})
	require.NoError(t, err)
	_, err = db.check.Exec(ctx, `UPDATE dedupe_generations SET started_at = '-infinity'`)
	require.NoError(t, err)
	_, err = d.Purge(ctx, db.pool, 0)
	require.NoError(t, err)
	again, err = d.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed(), "replayed from the previous generation")
	assert.Equal(t, 2, count(t, db.check, `SELECT count(*) FROM orders`))
}

// The generations layout's lock-first claim (migration 0006): a replay takes no lock, and a key
// committed while fn runs by a claim that took no lock makes the insert fail, fn's effect roll
// back and the other's response come back.
func TestGenerationsLockFirst(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations, LockWait: 200 * time.Millisecond})
	replayUnderHeldLock(t, d, db.Pool, dedupe.Request{Scope: "gen", Key: "k"})

	// Generation 0 is current in a fresh schema.
	lockFirstLosesToLocklessKey(t, d, db.Pool, db.Pool, "dedupe_keys_g0")
}

// Migration 0007: a new key costs one probe of each live generation's primary key (0006 made
// two of the previous generation's and three of the current one's, its INSERT .. ON CONFLICT
// included), and the claim functions keep one generic plan per statement, so that a rotation
// costs each session one plan of the new generation's branch. Migrating back to 0006 takes
// both back.
func TestGenerationsFastClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := harness.DB(t, nil)
	createOrders(t, db.Pool)
	d := dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations})
	var calls atomic.Int64
	// probes runs one new key's claim on a connection of its own and returns how many index
	// scans it made of the current (g0) and the previous (g2) generation's primary key.
	probes := func(key string) (current, previous int64) {
		conn, err := db.Pool.Acquire(ctx)
		require.NoError(t, err)
		defer conn.Release()
		scans := func() (c, p int64) {
			_, err := conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
			require.NoError(t, err)
			require.NoError(t, conn.QueryRow(ctx, `SELECT
				(SELECT coalesce(idx_scan, 0) FROM pg_stat_user_indexes WHERE schemaname = $1 AND indexrelname = 'dedupe_keys_g0_pkey'),
				(SELECT coalesce(idx_scan, 0) FROM pg_stat_user_indexes WHERE schemaname = $1 AND indexrelname = 'dedupe_keys_g2_pkey')`,
				db.Schema).Scan(&c, &p))
			return c, p
		}
		c0, p0 := scans()
		res, err := d.Do(ctx, conn.Conn(), dedupe.Request{Scope: "gen", Key: key}, insertOrder(&calls, key))
		require.NoError(t, err)
		require.False(t, res.Replayed())
		// The backend's counters reach the shared statistics at its next transaction's end.
		_, err = conn.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
		require.NoError(t, err)
		c1, p1 := scans()
		return c1 - c0, p1 - p0
	}
	generic := func() []string {
		rows, err := db.Pool.Query(ctx, `SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = $1 AND 'plan_cache_mode=force_generic_plan' = ANY (p.proconfig) ORDER BY 1`, db.Schema)
		require.NoError(t, err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return names
	}

	// Keys unique to this schema: the key's lock is database-wide, and a second copy of the
	// suite holding the same key's lock would send the lookup down its slower path.
	c, p := probes(db.Schema + "/new")
	assert.Equal(t, [2]int64{1, 1}, [2]int64{c, p}, "probes of the current and the previous generation")
	assert.Equal(t, []string{"dedupe_gen_claim", "dedupe_gen_insert", "dedupe_gen_lookup", "dedupe_gen_store"}, generic())

	m, err := migrations.New(db.Pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err)
	_, err = m.Migrate(ctx, 6)
	require.NoError(t, err)
	c, p = probes(db.Schema + "/new at 0006")
	assert.Equal(t, [2]int64{3, 2}, [2]int64{c, p}, "0006's probes")
	assert.Empty(t, generic())
}
