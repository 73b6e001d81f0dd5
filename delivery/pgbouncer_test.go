package delivery_test

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/delivery"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// Behind PgBouncer in transaction pooling, in the query modes that work there, a PollOnly
// Client migrates, enqueues, retries, orders, lists and re-drives.
func TestPgBouncerPollOnly(t *testing.T) {
	t.Parallel()
	pooler := os.Getenv(pgtest.EnvPgBouncerURL)
	if pooler == "" {
		t.Fatal(pgtest.HowToPgBouncer)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			p, drop, err := pgtest.CreatePooled(ctx, pgtest.URL(t), pooler, t.Name(), &pgtest.Options{NoMigrations: true})
			require.NoError(t, err)
			t.Cleanup(drop)
			pool, err := pgtest.PoolWithMode(ctx, p.URL, mode, 8)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			require.NoError(t, delivery.Migrate(ctx, pool, nil))

			rc := newReceiver(t, func(w http.ResponseWriter, n int, r *http.Request) {
				switch {
				case r.Header.Get("Idempotency-Key") == "refused" && n == 1:
					w.WriteHeader(422)
				case n == 1:
					w.WriteHeader(503)
				default:
					w.WriteHeader(200)
				}
			})
			cfg := fastConfig("")
			cfg.PollOnly = true
			cfg.OrderingRecheck = 5 * time.Millisecond
			c := startClient(t, pool, cfg)
			ids := enqueue(t, c, pool,
				delivery.Message{URL: rc.URL, Key: "a", OrderingKey: "o"},
				delivery.Message{URL: rc.URL, Key: "b", OrderingKey: "o"},
				delivery.Message{URL: rc.URL, Key: "refused"})
			waitState(t, pool, ids[2], "cancelled")
			dead, err := c.ListDead(ctx, nil)
			require.NoError(t, err)
			require.Len(t, dead, 1)
			require.NoError(t, c.Redrive(ctx, jobID(t, pool, ids[2])))
			for _, id := range ids {
				waitState(t, pool, id, "completed")
			}
			seen := rc.requests()
			assert.Len(t, seen, 6) // a, b and refused twice each
			var firstB, lastA int
			for i, r := range seen {
				if r.Key == "a" {
					lastA = i
				}
				if r.Key == "b" && firstB == 0 {
					firstB = i
				}
			}
			assert.Greater(t, firstB, lastA, "b sent before a was delivered")
		})
	}
}
