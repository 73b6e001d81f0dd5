package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/migrations"
)

// result is one in-process run of the command.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs pgonce with DATABASE_URL set to url ("" for none).
func cli(t *testing.T, url string, args ...string) result {
	t.Helper()
	return cliCtx(context.Background(), t, url, &bytes.Buffer{}, args...)
}

// output is where a run writes: a bytes.Buffer, or lines to follow it while it runs.
type output interface {
	Write([]byte) (int, error)
	String() string
}

func cliCtx(ctx context.Context, t *testing.T, url string, stdout output, args ...string) result {
	t.Helper()
	return cliOut(ctx, t, url, stdout, &bytes.Buffer{}, args...)
}

func cliOut(ctx context.Context, t *testing.T, url string, stdout, stderr output, args ...string) result {
	t.Helper()
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return ""
	}
	code := run(ctx, args, env, stdout, stderr)
	return result{code, stdout.String(), stderr.String()}
}

func newDB(t *testing.T, migrated bool) *pgtest.DB {
	t.Helper()
	return pgtest.New(t, pgtest.URL(t), &pgtest.Options{NoMigrations: !migrated})
}

// insertKeys adds n rows to scope that expired an hour ago, and one live row.
func insertKeys(t *testing.T, db *pgtest.DB, scope string, expired int) {
	t.Helper()
	// One statement, so a purger running meanwhile sees all the expired rows or none (with one
	// INSERT per row, a run between two of them purged them in parts, and TestPurgeEvery waited
	// forever for a run that purged them all).
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO dedupe_keys (scope, key, status, body, created_at, completed_at, expires_at)
		SELECT $1, 'old-' || repeat('x', i), 200, '\x'::bytea, now() - interval '2 hours', now() - interval '2 hours', now() - interval '1 hour'
		FROM generate_series(1, $2::int) AS i
		UNION ALL
		SELECT $1, 'live', 200, NULL::bytea, now(), now(), now() + interval '1 hour'
		ON CONFLICT DO NOTHING`, scope, expired)
	require.NoError(t, err)
}

func countKeys(t *testing.T, db *pgtest.DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dedupe_keys`).Scan(&n))
	return n
}

// --help on every command prints its usage on stdout and exits 0, with no database needed.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"migrate", "--help"}, {"migrate", "up", "--help"}, {"migrate", "down", "-h"},
		{"purge", "--help"}, {"key", "--help"}, {"key", "show", "--help"}, {"key", "forget", "--help"},
		{"stats", "--help"},
	} {
		r := cli(t, "", args...)
		assert.Equal(t, exitOK, r.code, "%v: %s", args, r.stderr)
		assert.Contains(t, r.stdout, "Usage", "%v", args)
		assert.Empty(t, r.stderr, "%v", args)
	}
	r := cli(t, "", "purge", "--help")
	assert.Contains(t, r.stdout, "-every")
	assert.Contains(t, r.stdout, "-database-url")
}

// Bad usage exits 2 with a message on stderr, before connecting anywhere.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	const url = "postgres://nobody@127.0.0.1:1/none"
	for _, c := range []struct {
		url  string
		args []string
		want string
	}{
		{url, nil, "no command"},
		{url, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{url, []string{"migrate"}, "want 1 arguments, got 0"},
		{url, []string{"migrate", "sideways"}, `unknown subcommand "sideways"`},
		{url, []string{"migrate", "down"}, "pass --yes"},
		{url, []string{"migrate", "up", "extra"}, "want 1 arguments, got 2"},
		{url, []string{"purge", "--nope"}, "flag provided but not defined: -nope"},
		{url, []string{"purge", "--batch", "0"}, "--batch must be positive"},
		{url, []string{"purge", "--every", "soon"}, "invalid value"},
		{url, []string{"purge", "now"}, "want 0 arguments, got 1"},
		{url, []string{"key"}, "no subcommand"},
		{url, []string{"key", "burn", "s", "k"}, `unknown subcommand "burn"`},
		{url, []string{"key", "show", "only-scope"}, "want 2 arguments, got 1"},
		{url, []string{"key", "forget", "s", "k", "more"}, "want 2 arguments, got 3"},
		{url, []string{"stats", "x"}, "want 0 arguments, got 1"},
		{"", []string{"stats"}, "set DATABASE_URL or --database-url"},
	} {
		r := cli(t, c.url, c.args...)
		assert.Equal(t, exitUsage, r.code, "%v", c.args)
		assert.Contains(t, r.stderr, c.want, "%v", c.args)
		assert.Empty(t, r.stdout, "%v", c.args)
	}
}

// A database that cannot be reached is a failure (1), not bad usage.
func TestConnectFailure(t *testing.T) {
	t.Parallel()
	r := cli(t, "", "stats", "--database-url", "postgres://nobody@127.0.0.1:1/none?connect_timeout=5")
	assert.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stderr, "pgonce stats: connect")
}

// migrate version, up, validate, down in a fresh schema; --migrations-table and --schema.
func TestMigrate(t *testing.T) {
	t.Parallel()
	db := newDB(t, false)
	r := cli(t, db.URL, "migrate", "version")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, fmt.Sprintf("version 0 (dirty: false, latest embedded: %d)\n", migrations.Latest()), r.stdout)

	r = cli(t, db.URL, "migrate", "validate")
	assert.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stderr, "behind")

	r = cli(t, db.URL, "migrate", "up")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "0001_dedupe_keys up")
	assert.Contains(t, r.stdout, "0002_fences up")
	assert.Contains(t, r.stdout, fmt.Sprintf("version %d (was 0)", migrations.Latest()))
	r = cli(t, db.URL, "migrate", "up")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, fmt.Sprintf("no change: version %d\n", migrations.Latest()), r.stdout)
	r = cli(t, db.URL, "migrate", "validate")
	assert.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, fmt.Sprintf("up to date: version %d\n", migrations.Latest()), r.stdout)

	r = cli(t, db.URL, "migrate", "down", "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "0002_fences down")
	assert.Contains(t, r.stdout, fmt.Sprintf("version 0 (was %d)", migrations.Latest()))
	r = cli(t, db.URL, "migrate", "version")
	assert.Equal(t, fmt.Sprintf("version 0 (dirty: false, latest embedded: %d)\n", migrations.Latest()), r.stdout)

	// Another version table and another schema, both flags after the subcommand.
	schema := db.Schema + "_cli"
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	r = cli(t, db.URL, "migrate", "up", "--schema", schema, "--migrations-table", "cli_versions")
	require.Equal(t, exitOK, r.code, r.stderr)
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename IN ('dedupe_keys', 'fences', 'cli_versions')`, schema).Scan(&n))
	assert.Equal(t, 3, n)
	r = cli(t, db.URL, "migrate", "validate", "--schema", schema)
	assert.Equal(t, exitFail, r.code, "the default version table in that schema is empty")
	r = cli(t, db.URL, "migrate", "validate", "--schema", schema, "--migrations-table", "cli_versions")
	assert.Equal(t, exitOK, r.code, r.stderr)

	r = cli(t, db.URL, "migrate", "up", "--schema", "pg_nope")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "reserved")
}

// purge deletes expired keys only and says how many.
func TestPurgeOnce(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	insertKeys(t, db, "orders.create", 3)
	r := cli(t, db.URL, "purge", "--batch", "2")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "purged 3 expired keys")
	assert.Equal(t, 1, countKeys(t, db))
	r = cli(t, db.URL, "purge")
	assert.Contains(t, r.stdout, "purged 0 expired keys")
}

// purge --layout generations rotates when the generation is due and truncates the dead one.
func TestPurgeGenerations(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO dedupe_keys_g1 (scope, key, created_at, expires_at)
		SELECT 'orders.create', 'k' || i, now() - interval '2 hours', now() - interval '1 hour' FROM generate_series(1, 3) i`)
	require.NoError(t, err)
	r := cli(t, db.URL, "purge", "--layout", "generations")
	require.Equal(t, exitOK, r.code, r.stderr)
	var current, left int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current, (SELECT count(*) FROM dedupe_keys_g1) FROM dedupe_generations`).Scan(&current, &left))
	assert.Zero(t, current, "not due")
	assert.Zero(t, left, "the dead generation was truncated")
	_, err = db.Pool.Exec(ctx, `UPDATE dedupe_generations SET started_at = '-infinity'`)
	require.NoError(t, err)
	r = cli(t, db.URL, "purge", "--layout", "generations")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current FROM dedupe_generations`).Scan(&current))
	assert.Equal(t, 1, current, "rotated")
	r = cli(t, db.URL, "purge", "--layout", "nope")
	assert.Equal(t, exitUsage, r.code)
}

// lines is a stdout that hands each write to the test as it happens.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
	c   chan string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.c <- string(p)
	return len(p), nil
}

// next is the run's next write to l; the test fails if the run ends first.
func (l *lines) next(t *testing.T, done <-chan result) string {
	t.Helper()
	select {
	case line := <-l.c:
		return line
	case r := <-done:
		t.Fatalf("pgonce ended early: %+v", r)
		return ""
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// purge --every runs again and again until its context is cancelled (SIGINT/SIGTERM in main),
// then exits 0.
func TestPurgeEvery(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	insertKeys(t, db, "orders.create", 3)
	out := &lines{c: make(chan string)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result)
	go func() { done <- cliCtx(ctx, t, db.URL, out, "purge", "--every", "10ms") }()

	assert.Contains(t, out.next(t, done), "purged 3 expired keys")
	insertKeys(t, db, "payments.capture", 2) // between two runs: the next one finds them
	for line := out.next(t, done); !strings.Contains(line, "purged 2 expired keys"); line = out.next(t, done) {
		assert.Contains(t, line, "purged 0 expired keys", "a run that started before the insert")
	}
	cancel()
	go func() {
		for range out.c { // the last report and "stopped"
		}
	}()
	r := <-done
	close(out.c)
	assert.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "stopped: context canceled")
	assert.Equal(t, 2, countKeys(t, db), "the live row of each scope")
}

// A failed run of purge --every is reported and the next run tried: a purger started before
// the table exists (or during an outage) recovers without a restart.
func TestPurgeEveryCarriesOn(t *testing.T) {
	t.Parallel()
	db := newDB(t, false) // no dedupe_keys yet
	out, errs := &lines{c: make(chan string)}, &lines{c: make(chan string)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result)
	go func() { done <- cliOut(ctx, t, db.URL, out, errs, "purge", "--every", "10ms") }()

	line := errs.next(t, done)
	assert.Contains(t, line, "pgonce purge: ")
	assert.Contains(t, line, "(next run in 10ms)")
	go func() {
		for range errs.c { // failed runs until the table exists
		}
	}()
	require.NoError(t, migrations.Up(context.Background(), db.URL, nil))
	assert.Contains(t, out.next(t, done), "purged 0 expired keys", "the run after a failed one")
	cancel()
	go func() {
		for range out.c {
		}
	}()
	r := <-done
	close(out.c)
	close(errs.c)
	assert.Equal(t, exitOK, r.code)
}

// key show prints the row Do stored; --body adds the body; a missing key exits 1.
func TestKeyShow(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	ctx := context.Background()
	fp := dedupe.Fingerprint("POST", "/orders", []byte(`{"sku":"book-42"}`))
	_, err := dedupe.New(nil).Do(ctx, db.Pool, dedupe.Request{Scope: "orders.create", Key: "k-1", Fingerprint: fp},
		func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			return dedupe.Response{Status: 201, Body: []byte(`{"id":42}`)}, nil
		})
	require.NoError(t, err)

	r := cli(t, db.URL, "key", "show", "orders.create", "k-1")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, want := range []string{"scope         orders.create\n", "key           k-1\n", "status        201\n",
		"fingerprint   " + hexString(fp) + "\n", "body_bytes    9\n", "completed_at  20", "expires_at    20"} {
		assert.Contains(t, r.stdout, want)
	}
	assert.NotContains(t, r.stdout, `{"id":42}`, "no body without --body")
	assert.NotContains(t, r.stdout, "expired")

	r = cli(t, db.URL, "key", "show", "--body", "orders.create", "k-1")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "body          {\"id\":42}\n")

	_, err = db.Pool.Exec(ctx, `UPDATE dedupe_keys SET body = '\x00ff', created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'`)
	require.NoError(t, err)
	r = cli(t, db.URL, "key", "show", "orders.create", "k-1", "--body")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "body (hex)    00ff\n")
	assert.Contains(t, r.stdout, "(expired")

	r = cli(t, db.URL, "key", "show", "orders.create", "k-2")
	assert.Equal(t, exitFail, r.code)
	assert.Equal(t, "pgonce key show: no key \"k-2\" in scope \"orders.create\"\n", r.stderr)
	assert.Empty(t, r.stdout)
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

// key forget deletes one key (the next request with it runs again) and says whether it existed.
func TestKeyForget(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	insertKeys(t, db, "orders.create", 1)
	insertKeys(t, db, "other", 0)
	r := cli(t, db.URL, "key", "forget", "orders.create", "live")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `forgot key "live" in scope "orders.create"`)
	assert.Equal(t, 2, countKeys(t, db), "only that key: not its scope's other keys, not the same key in another scope")
	r = cli(t, db.URL, "key", "forget", "orders.create", "live")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `no key "live" in scope "orders.create": nothing to forget`)
}

// stats counts rows by scope and expired rows, and lists the table and index sizes.
func TestStats(t *testing.T) {
	t.Parallel()
	db := newDB(t, true)
	insertKeys(t, db, "orders.create", 2)
	insertKeys(t, db, "payments.capture", 1)
	r := cli(t, db.URL, "stats")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^orders\.create\s+3\s+2\s+0$`, r.stdout)
	assert.Regexp(t, `(?m)^payments\.capture\s+2\s+1\s+0$`, r.stdout)
	assert.Regexp(t, `(?m)^\(all\)\s+5\s+3\s+0$`, r.stdout)
	assert.Regexp(t, `(?m)^"dedupe_keys" \(table\)\s+\d+ kB$`, r.stdout)
	assert.Regexp(t, `(?m)^dedupe_keys_pkey\s+\d+ kB$`, r.stdout)
	assert.Regexp(t, `(?m)^dedupe_keys_expires_at_idx\s+\d+ kB$`, r.stdout)
	assert.Contains(t, r.stdout, "3 expired keys waiting for purge\n")

	empty := newDB(t, false)
	r = cli(t, empty.URL, "stats")
	assert.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stderr, "run pgonce migrate up")
}

// Every command works in every pgx QueryExecMode, chosen through the URL as a PgBouncer
// set-up would (default_query_exec_mode=exec or simple_protocol), and with --schema.
func TestQueryExecModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			db := newDB(t, false)
			url := db.URL + "&default_query_exec_mode=" + mode
			for _, args := range [][]string{
				{"migrate", "up"}, {"migrate", "version"}, {"migrate", "validate"},
				{"purge"}, {"stats"}, {"key", "show", "orders.create", "live", "--body"},
				{"key", "forget", "orders.create", "live"},
				{"stats", "--schema", db.Schema}, {"purge", "--schema", db.Schema},
				{"migrate", "down", "--yes"},
			} {
				if args[0] == "purge" && len(args) == 1 {
					insertKeys(t, db, "orders.create", 2)
				}
				r := cli(t, url, args...)
				assert.Equal(t, exitOK, r.code, "%v: %s", args, r.stderr)
			}
		})
	}
}
