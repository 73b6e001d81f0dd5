package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
)

// genKeysFrom is where the checker finds the stored keys with -layout generations: the three
// generation tables, and the keys the rotator saved before each truncation (the soak's keys
// must outlive the run for the checker, and the dead generation's are truncated).
const genKeysFrom = `(SELECT scope, key, status, body FROM dedupe_keys_g0
UNION ALL SELECT scope, key, status, body FROM dedupe_keys_g1
UNION ALL SELECT scope, key, status, body FROM dedupe_keys_g2
UNION ALL SELECT scope, key, status, body FROM soak_truncated_keys)`

// rotator rotates the generations layout during a soak, as a service's periodic Purge would,
// with a rotation period short enough for two rotations in the run: the first turns the
// current generation into the previous one while claims and their duplicates straddle it, the
// second truncates the generation of the run's first third.
type rotator struct {
	pool   *pgxpool.Pool
	d      *dedupe.Deduper
	period time.Duration
	wg     sync.WaitGroup

	rotations int
	saved     int64
	err       error
}

// genPeriod is the rotation period for a soak of duration, and the keys' TTL (max_ttl), which
// it must exceed: the keys must not expire while the soak's duplicates of them still arrive.
func genPeriod(duration time.Duration) (period, ttl time.Duration) {
	// Whole seconds: max_ttl is set in milliseconds, and a TTL a fraction above it is refused.
	period = max(duration/3, 3*time.Second).Round(time.Second)
	return period, period - time.Second
}

// startRotator configures the layout in the soak's database (rotation period, max_ttl, the
// current generation starting now) and starts rotating; stop it with wait.
func startRotator(ctx context.Context, pool *pgxpool.Pool, duration time.Duration) (*rotator, error) {
	period, ttl := genPeriod(duration)
	if _, err := pool.Exec(ctx, `UPDATE dedupe_generations SET max_ttl = $1::bigint * interval '1 millisecond',
		rotate_every = $2::bigint * interval '1 millisecond', started_at = clock_timestamp()`, ttl.Milliseconds(), period.Milliseconds()); err != nil {
		return nil, fmt.Errorf("configure the generations: %w", err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE soak_truncated_keys (LIKE dedupe_keys)`); err != nil {
		return nil, err
	}
	r := &rotator{pool: pool, d: dedupe.New(&dedupe.Options{Layout: dedupe.LayoutGenerations}), period: period}
	r.wg.Go(func() { r.run(ctx) })
	return r, nil
}

func (r *rotator) run(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var due bool
		var current int64
		if err := r.pool.QueryRow(ctx, `SELECT clock_timestamp() >= started_at + rotate_every, current FROM dedupe_generations`).Scan(&due, &current); err != nil {
			r.fail(ctx, err)
			return
		}
		if !due {
			continue
		}
		// The previous generation becomes dead at this rotation and is truncated right after:
		// save its keys for the checker first. Nothing writes to it any more (the claims that
		// could were all made before the last rotation, a period ago).
		tag, err := r.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO soak_truncated_keys SELECT * FROM dedupe_keys_g%d`, (current+2)%3))
		if err != nil {
			r.fail(ctx, err)
			return
		}
		if _, err := r.d.Purge(ctx, r.pool, 0); err != nil {
			r.fail(ctx, err)
			return
		}
		r.rotations++
		r.saved += tag.RowsAffected()
	}
}

func (r *rotator) fail(ctx context.Context, err error) {
	if ctx.Err() == nil {
		r.err = fmt.Errorf("rotator: %w", err)
	}
}

// wait returns once the rotator has stopped (its context ended) and reports its error.
func (r *rotator) wait() error {
	r.wg.Wait()
	return r.err
}
