package integration_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/examples/orders/loadgen"
	"github.com/pgonce/pgonce/examples/orders/ordersvc"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/optimistic"
	"github.com/pgonce/pgonce/pessimistic"
)

// Each pgx.QueryExecMode: in cache_statement and cache_describe the server describes every
// statement and pgx encodes arguments for the described types; in describe_exec likewise, per
// call; in exec and simple_protocol nothing is described, so an argument whose Go type pgx
// cannot encode without a server type (a map for jsonb, say) fails. The last two are the
// modes pgx advises behind a transaction pooler.
var queryModes = []struct {
	name string // the value of the default_query_exec_mode connection parameter
	mode pgx.QueryExecMode
}{
	{"cache_statement", pgx.QueryExecModeCacheStatement},
	{"cache_describe", pgx.QueryExecModeCacheDescribe},
	{"describe_exec", pgx.QueryExecModeDescribeExec},
	{"exec", pgx.QueryExecModeExec},
	{"simple_protocol", pgx.QueryExecModeSimpleProtocol},
}

// modeDB is one fresh database for one case, and how to reach it in the mode under test.
type modeDB struct {
	pool       *pgxpool.Pool // the mode under test
	url        string        // the database for a service's pool (add the mode to it)
	migrateURL string        // where migrations run
	check      *pgxpool.Pool // for the test's own set-up and checks
	session    bool          // session state survives between transactions (no transaction pooler)
}

// modeCase runs a representative set of one package's operations on db.
type modeCase struct {
	pkg string
	run func(t *testing.T, db modeDB, mode string)
}

var modeCases = []modeCase{
	{"dedupe", modeDedupe},
	{"dedupe/generations", modeDedupeGenerations},
	{"dedupe/insert-first", modeDedupeInsertFirst},
	{"dedupehttp", modeDedupeHTTP},
	{"optimistic", modeOptimistic},
	{"pessimistic", modePessimistic},
	{"examples/orders", modeOrders},
	{"flow", modeFlow},
}

// Every package works in every query mode, on a direct connection.
func TestQueryExecModes(t *testing.T) {
	t.Parallel()
	for _, m := range queryModes {
		for _, c := range modeCases {
			t.Run(m.name+"/"+c.pkg, func(t *testing.T) {
				t.Parallel()
				db := harness.DB(t, nil)
				c.run(t, modeDB{
					pool: modePool(t, db.URL, m.mode), url: db.URL, migrateURL: db.URL,
					check: db.Pool, session: true,
				}, m.name)
			})
		}
	}
}

// Every package works behind PgBouncer in transaction pooling in every query mode that does
// not keep prepared statements on a server connection (cache_statement does; PgBouncer 1.18
// answers it with "prepared statement already exists").
func TestQueryExecModesPgBouncer(t *testing.T) {
	t.Parallel()
	for _, m := range queryModes[1:] {
		for _, c := range modeCases {
			t.Run(m.name+"/"+c.pkg, func(t *testing.T) {
				t.Parallel()
				db := harness.PooledDB(t, nil)
				c.run(t, modeDB{
					pool: modePool(t, db.URL, m.mode), url: db.URL, migrateURL: db.DirectURL,
					check: db.Pool,
				}, m.name)
			})
		}
	}
}

func modePool(t *testing.T, databaseURL string, mode pgx.QueryExecMode) *pgxpool.Pool {
	t.Helper()
	pool, err := pgtest.PoolWithMode(context.Background(), databaseURL, mode, 4)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func modeDedupe(t *testing.T, db modeDB, _ string) {
	ctx := context.Background()
	createOrders(t, db.check)
	// LockWait adds the pipelined lock_timeout statements, whose argument is a string.
	d := dedupe.New(&dedupe.Options{LockWait: 5 * time.Second})
	req := dedupe.Request{Scope: "modes", Key: "k1", Fingerprint: []byte{1, 2, 3}}
	first, err := d.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err, "first execution stores status, headers and body")
	again, err := d.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response, "headers and body replay as stored")

	_, err = d.Do(ctx, db.pool, dedupe.Request{Scope: "modes", Key: "k1", Fingerprint: []byte{9}}, insertOrder(nil, req.Key))
	assert.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)

	// Joined: the claim runs behind a savepoint in the caller's transaction.
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		_, err := d.Do(ctx, tx, dedupe.Request{Scope: "modes", Key: "joined"}, insertOrder(nil, "joined"))
		return err
	})
	require.NoError(t, err)

	// An expired key is re-claimed in place, then Purge deletes expired keys.
	_, err = db.check.Exec(ctx, `UPDATE dedupe_keys SET created_at = now() - interval '2 seconds', expires_at = now() - interval '1 second' WHERE key = 'k1'`)
	require.NoError(t, err)
	re, err := d.Do(ctx, db.pool, req, insertOrder(nil, req.Key))
	require.NoError(t, err)
	assert.False(t, re.Replayed(), "expired key runs again")
	_, err = db.check.Exec(ctx, `UPDATE dedupe_keys SET created_at = now() - interval '2 seconds', expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	n, err := d.Purge(ctx, db.pool, 1)
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
	assert.Equal(t, 3, count(t, db.check, `SELECT count(*) FROM orders`))
}

func modeDedupeHTTP(t *testing.T, db modeDB, _ string) {
	createOrders(t, db.check)
	mw, err := dedupehttp.New(dedupehttp.Config{DB: db.pool})
	require.NoError(t, err)
	h := mw.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := dedupehttp.Tx(r.Context())
		var id int64
		if err := tx.QueryRow(r.Context(), `INSERT INTO orders (request_key) VALUES ($1) RETURNING id`, "http").Scan(&id); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Location", "/orders/1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	post := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"sku":"a"}`))
		r.Header.Set("Idempotency-Key", `"modes-1"`)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	first := post()
	require.Equal(t, http.StatusCreated, first.Code, first.Body.String())
	again := post()
	assert.Equal(t, http.StatusCreated, again.Code, again.Body.String())
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, "/orders/1", again.Header().Get("Location"))
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.Equal(t, 1, count(t, db.check, `SELECT count(*) FROM orders`))
}

func modeOptimistic(t *testing.T, db modeDB, _ string) {
	ctx := context.Background()
	_, err := db.check.Exec(ctx, productsDDL+`; INSERT INTO products (sku, stock) VALUES ('a', 10)`)
	require.NoError(t, err)
	var stock int
	v, err := products.Get(ctx, db.pool, "a", []string{"stock"}, &stock)
	require.NoError(t, err)
	assert.Equal(t, 10, stock)
	nv, err := products.Update(ctx, db.pool, "a", v, optimistic.Set{Column: "stock", Value: stock - 1}, optimistic.Set{Column: "name", Value: "A"})
	require.NoError(t, err)
	assert.Equal(t, v+1, nv)
	_, err = products.Update(ctx, db.pool, "a", v, optimistic.Set{Column: "stock", Value: 0})
	assert.ErrorIs(t, err, optimistic.ErrStale)
	assert.Equal(t, 9, count(t, db.check, `SELECT stock FROM products WHERE sku = 'a'`))
}

func modePessimistic(t *testing.T, db modeDB, _ string) {
	ctx := context.Background()
	_, err := db.check.Exec(ctx, productsDDL+`; INSERT INTO products (sku, stock) VALUES ('a', 10)`)
	require.NoError(t, err)
	table := pgx.Identifier{"products"}
	_, err = pessimistic.RetryTx(ctx, db.pool, nil, func(ctx context.Context, tx pgx.Tx) error {
		for _, l := range []pessimistic.RowLock{{}, {Mode: pessimistic.NoWait}, {Timeout: time.Second}, {Mode: pessimistic.SkipLocked}} {
			var stock int
			if err := l.Row(ctx, tx, table, "sku", "a", []string{"stock"}, &stock); err != nil {
				return err
			}
		}
		if err := pessimistic.XactLock(ctx, tx, lockKey("modes")); err != nil {
			return err
		}
		if ok, err := pessimistic.TryXactLock(ctx, tx, lockKey("modes-try")); err != nil || !ok {
			return assert.AnError
		}
		if err := pessimistic.XactLock2(ctx, tx, 1, int32(lockKey("modes-2"))); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE products SET stock = stock - 1 WHERE sku = 'a'`)
		return err
	})
	require.NoError(t, err)

	write := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE products SET stock = stock - 1 WHERE sku = 'a'`)
		return err
	}
	require.NoError(t, pessimistic.FencedWrite(ctx, db.pool, "stock:a", 7, write))
	assert.ErrorIs(t, pessimistic.FencedWrite(ctx, db.pool, "stock:a", 6, write), pessimistic.ErrStaleToken)

	day := func(ctx context.Context, tx pgx.Tx) error { return write(ctx, tx) }
	outcome, err := pessimistic.RunOnce(ctx, db.pool, "modes", "2026-11-26", nil, day)
	require.NoError(t, err)
	assert.Equal(t, pessimistic.RunRan, outcome)
	outcome, err = pessimistic.RunOnce(ctx, db.pool, "modes", "2026-11-26", nil, day)
	require.NoError(t, err)
	assert.Equal(t, pessimistic.RunAlreadyRan, outcome)

	if db.session {
		err := pessimistic.WithSessionLock(ctx, db.pool, lockKey("modes-session"), func(ctx context.Context, conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, `UPDATE products SET stock = stock - 1 WHERE sku = $1`, "a")
			return err
		})
		require.NoError(t, err)
	}
	want := 7
	if db.session {
		want = 6
	}
	assert.Equal(t, want, count(t, db.check, `SELECT stock FROM products WHERE sku = 'a'`))
}

func modeOrders(t *testing.T, db modeDB, mode string) {
	ctx := context.Background()
	svc, err := ordersvc.Open(ctx, ordersvc.Config{DatabaseURL: withQueryMode(t, db.url, mode), MigrateURL: db.migrateURL, MaxConns: 4, Instance: "modes",
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	require.NoError(t, err, "the service starts")
	t.Cleanup(svc.Close)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	require.NoError(t, svc.Seed(ctx, "widget", "Widget", 100))
	rep, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{srv.URL}, SKU: "widget", InitialStock: 100, Keys: 6, SendsPerKey: 2, Mismatches: 1}, db.check)
	require.NoError(t, err)
	assert.True(t, rep.OK(), "\n%s", rep.Table())
	assert.Equal(t, 6, rep.Created, "\n%s", rep.Table())
	assert.Zero(t, rep.Other, "no 5xx: \n%s", rep.Table())
	res, err := svc.RunReport(ctx, time.Now().UTC())
	require.NoError(t, err)
	assert.Equal(t, "built", res.Outcome)
}

// withQueryMode returns databaseURL with pgx's default_query_exec_mode parameter set to mode.
func withQueryMode(t *testing.T, databaseURL, mode string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	require.NoError(t, err)
	q := u.Query()
	q.Set("default_query_exec_mode", mode)
	u.RawQuery = q.Encode()
	return u.String()
}
