package integration_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/optimistic"
	"github.com/pgonce/pgonce/pessimistic"
)

// sqlLog is a pgx tracer collecting the SQL text of every query and batch item.
type sqlLog struct {
	mu   sync.Mutex
	sqls []string
}

func (l *sqlLog) add(sql string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sqls = append(l.sqls, sql)
}

func (l *sqlLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.add(d.SQL)
	return ctx
}
func (l *sqlLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (l *sqlLog) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (l *sqlLog) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	l.add(d.SQL)
}
func (l *sqlLog) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// tags returns the pgonce tags that start a statement, "claim" for "/* pgonce:claim */ WITH".
func (l *sqlLog) tags() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	tags := map[string]bool{}
	for _, s := range l.sqls {
		if rest, ok := strings.CutPrefix(s, "/* pgonce:"); ok {
			if tag, _, ok := strings.Cut(rest, " */ "); ok {
				tags[tag] = true
			}
		}
	}
	return tags
}

// Every statement of the toolkit starts with its /* pgonce:name */ tag, so pg_stat_statements
// and pgx tracers tell them apart, and the comment works in every query exec mode.
func TestSQLTags(t *testing.T) {
	t.Parallel()
	for _, m := range queryModes {
		mode := m.mode
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := harness.DB(t, nil)
			createOrders(t, db.Pool)
			_, err := db.Pool.Exec(ctx, productsDDL+`; INSERT INTO products (sku, stock) VALUES ('mug', 5)`)
			require.NoError(t, err)
			cfg, err := pgxpool.ParseConfig(db.URL)
			require.NoError(t, err)
			cfg.ConnConfig.DefaultQueryExecMode = mode
			log := &sqlLog{}
			cfg.ConnConfig.Tracer = log
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)

			// dedupe: the lock-first claim (lock, lookup, the key inserted with COMMIT),
			// lock_timeout, then a replay.
			d := dedupe.New(&dedupe.Options{LockWait: 10e9})
			req := dedupe.Request{Scope: "tags", Key: "k1", Fingerprint: []byte("fp")}
			res, err := d.Do(ctx, pool, req, insertOrder(nil, "k1"))
			require.NoError(t, err)
			require.False(t, res.Replayed())
			res, err = d.Do(ctx, pool, req, insertOrder(nil, "k1"))
			require.NoError(t, err)
			require.True(t, res.Replayed())

			// An expired key is dropped and inserted anew; then purged.
			_, err = pool.Exec(ctx, `UPDATE dedupe_keys SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'`)
			require.NoError(t, err)
			res, err = d.Do(ctx, pool, req, insertOrder(nil, "k1"))
			require.NoError(t, err)
			require.False(t, res.Replayed(), "re-claimed")
			_, err = pool.Exec(ctx, `UPDATE dedupe_keys SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'`)
			require.NoError(t, err)
			n, err := d.Purge(ctx, pool, 100)
			require.NoError(t, err)
			require.Equal(t, int64(1), n)

			// The insert-first claim of Do's own transaction (REPEATABLE READ): claim, store,
			// and an expired key re-claimed in place.
			rr := dedupe.New(&dedupe.Options{TxOptions: pgx.TxOptions{IsoLevel: pgx.RepeatableRead}})
			rrReq := dedupe.Request{Scope: "tags", Key: "rr"}
			for range 2 {
				res, err = rr.Do(ctx, pool, rrReq, insertOrder(nil, "rr"))
				require.NoError(t, err)
				require.False(t, res.Replayed())
				_, err = pool.Exec(ctx, `UPDATE dedupe_keys SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'`)
				require.NoError(t, err)
			}

			// Joined transaction: savepoint, release, and undo after fn fails.
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			_, err = d.Do(ctx, tx, dedupe.Request{Scope: "tags", Key: "j1"}, insertOrder(nil, "j1"))
			require.NoError(t, err)
			boom := errors.New("boom")
			_, err = d.Do(ctx, tx, dedupe.Request{Scope: "tags", Key: "j2"}, func(context.Context, pgx.Tx) (dedupe.Response, error) {
				return dedupe.Response{}, boom
			})
			require.ErrorIs(t, err, boom)
			require.NoError(t, tx.Commit(ctx))

			// pessimistic and optimistic.
			require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if err := pessimistic.XactLock(ctx, tx, 1); err != nil {
					return err
				}
				if _, err := pessimistic.TryXactLock(ctx, tx, 2); err != nil {
					return err
				}
				if err := pessimistic.Fence(ctx, tx, "r", 1); err != nil {
					return err
				}
				var stock int
				return pessimistic.RowLock{Timeout: 10e9}.Row(ctx, tx, pgx.Identifier{"products"}, "sku", "mug", []string{"stock"}, &stock)
			}))
			require.NoError(t, pessimistic.WithSessionLock(ctx, pool, 3, func(context.Context, *pgx.Conn) error { return nil }))
			products := optimistic.Table{Name: pgx.Identifier{"products"}, ID: "sku"}
			v, err := products.Get(ctx, pool, "mug", nil)
			require.NoError(t, err)
			_, err = products.Update(ctx, pool, "mug", v, optimistic.Set{Column: "stock", Value: 4})
			require.NoError(t, err)

			tags := log.tags()
			for _, tag := range []string{
				"lock_new", "lookup", "insert_done", "drop_expired", "lock_key",
				"claim", "store", "commit", "set_lock_timeout", "restore_lock_timeout", "reclaim", "purge",
				"savepoint", "release_savepoint", "undo_savepoint",
				"advisory_xact_lock", "try_advisory_xact_lock", "fence", "rowlock", "advisory_lock", "advisory_unlock_all",
				"optimistic_get", "optimistic_update",
			} {
				assert.True(t, tags[tag], "no statement starts with /* pgonce:%s */", tag)
			}
		})
	}
}
