// Package pgtest hands tests an isolated PostgreSQL schema with the toolkit's migrations
// applied, so tests can run in parallel against one server without seeing each other's rows.
//
// The server comes from DEDUPE_TEST_DATABASE_URL. The integration module's harness resolves
// that URL (or starts a container) and builds on this package; packages of the root module use
// it directly for their examples.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/migrations"
)

// Environment variables naming the test servers.
const (
	EnvDatabaseURL = "DEDUPE_TEST_DATABASE_URL"
	EnvRedisURL    = "DEDUPE_TEST_REDIS_URL"
)

// HowTo says how to get test servers; tests print it when none is configured.
const HowTo = `no test servers: set DEDUPE_TEST_DATABASE_URL and DEDUPE_TEST_REDIS_URL. Either
  - run  eval "$(scripts/services.sh)"  from the repository root: it installs (apt-get) and
    starts PostgreSQL and Redis on this machine and prints the URLs ('make test' does this), or
  - run the integration module's tests (cd integration && go test ./...) with a Docker engine
    reachable: with the variables unset, its harness starts containers with testcontainers-go.`

// DB is one isolated schema.
type DB struct {
	// Pool's connections have search_path set to Schema.
	Pool *pgxpool.Pool
	// URL connects with search_path set to Schema (for migrations, subprocesses, examples).
	URL string
	// Schema is the schema's name.
	Schema string
}

// Options tunes New. A nil *Options means the defaults.
type Options struct {
	// MaxConns caps the pool; default 8. Concurrency tests raise it so that goroutines
	// really meet in the database rather than queue for connections.
	MaxConns int32
	// NoMigrations leaves the schema empty (for migration tests).
	NoMigrations bool
}

// URL returns DEDUPE_TEST_DATABASE_URL, or fails tb with HowTo.
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvDatabaseURL)
	if u == "" {
		tb.Fatal(HowTo)
	}
	return u
}

// New creates a schema named after the test in the database at baseURL, applies the
// migrations (unless opts.NoMigrations), and drops the schema when the test ends.
func New(tb testing.TB, baseURL string, opts *Options) *DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, drop, err := Create(ctx, baseURL, tb.Name(), opts)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(drop)
	return db
}

// Create is New for callers without a testing.TB (TestMain): it returns the schema and a
// function that closes the pool and drops the schema.
func Create(ctx context.Context, baseURL, name string, opts *Options) (*DB, func(), error) {
	if opts == nil {
		opts = &Options{}
	}
	schema := schemaName(name)
	admin, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", redact(baseURL), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, baseURL); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			_ = c.Close(ctx)
		}
	}
	db := &DB{URL: WithSearchPath(baseURL, schema), Schema: schema}
	if !opts.NoMigrations {
		if err := migrations.Up(ctx, db.URL, nil); err != nil {
			drop()
			return nil, nil, err
		}
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		drop()
		return nil, nil, err
	}
	cfg.MaxConns = 8
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if db.Pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		drop()
		return nil, nil, err
	}
	return db, func() { db.Pool.Close(); drop() }, nil
}

// WithSearchPath returns databaseURL (URL or key=value form) with search_path set to schema.
func WithSearchPath(databaseURL, schema string) string {
	if u, err := url.Parse(databaseURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return databaseURL + " search_path=" + schema
}

// Main is for TestMain of packages whose runnable examples need a database: it creates one
// schema for the package, exports its URL as DATABASE_URL (what the examples read, as a
// service would), runs the tests, and drops the schema. Without a configured server it prints
// HowTo and fails.
func Main(m *testing.M) int {
	base := os.Getenv(EnvDatabaseURL)
	if base == "" {
		fmt.Fprintln(os.Stderr, HowTo)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	db, drop, err := Create(ctx, base, "example", nil)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	defer drop()
	os.Setenv("DATABASE_URL", db.URL)
	return m.Run()
}

func schemaName(testName string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(rnd[:]))
	return b.String()
}

// redact hides a password in a URL for error messages.
func redact(databaseURL string) string {
	if u, err := url.Parse(databaseURL); err == nil && u.User != nil {
		return u.Redacted()
	}
	return "the test database"
}

// Warm opens n connections in pool before a concurrency test starts, so the goroutines the
// test releases together meet in the database instead of queueing for connection set-up.
func Warm(tb testing.TB, pool *pgxpool.Pool, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			tb.Fatalf("pgtest: warm pool: %v", err)
		}
		conns = append(conns, c)
	}
}
