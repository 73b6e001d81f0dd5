package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/migrations"
)

// EnvPgBouncerURL names the PgBouncer (transaction pooling) in front of the server at
// EnvDatabaseURL, with the same role and password.
const EnvPgBouncerURL = "DEDUPE_TEST_PGBOUNCER_URL"

// HowToPgBouncer says how to get a PgBouncer; tests that need one print it when none is set.
const HowToPgBouncer = `no PgBouncer: set DEDUPE_TEST_PGBOUNCER_URL to a PgBouncer in pool_mode = transaction in front
of DEDUPE_TEST_DATABASE_URL's server (same role and password, every database forwarded). Run
  eval "$(scripts/services.sh)"
from the repository root: it installs (apt-get) and starts one on 127.0.0.1:6432 and prints the
URL ('make test' does this). testcontainers-go does not start one.`

// Pooled is one isolated database reached through PgBouncer in transaction pooling.
//
// It is a database rather than a schema because a transaction pooler cannot give a client
// its own search_path: a startup parameter is refused (or dropped), and a SET lasts only
// until the server connection goes to another client. A whole database keeps the toolkit's
// unqualified table names working and tests apart.
type Pooled struct {
	// Pool goes through PgBouncer with QueryExecModeExec, the mode pgx advises behind a
	// transaction pooler.
	Pool *pgxpool.Pool
	// URL reaches Database through PgBouncer (no query mode set).
	URL string
	// DirectURL reaches Database without PgBouncer: for migrations (golang-migrate's session
	// advisory lock), session locks, and checks that must not depend on the pooler.
	DirectURL string
	// Database is the database's name.
	Database string
}

// CreatePooled creates a database named after name through directURL, applies the
// toolkit's migrations there (unless opts.NoMigrations), and opens Pool on it through
// poolerURL. The returned function closes the pool and drops the database.
func CreatePooled(ctx context.Context, directURL, poolerURL, name string, opts *Options) (*Pooled, func(), error) {
	if opts == nil {
		opts = &Options{}
	}
	dbName := schemaName(name)
	p := &Pooled{Database: dbName}
	var err error
	if p.DirectURL, err = withDatabase(directURL, dbName); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", EnvDatabaseURL, err)
	}
	if p.URL, err = withDatabase(poolerURL, dbName); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", EnvPgBouncerURL, err)
	}
	admin, err := pgx.Connect(ctx, directURL)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", redact(directURL), err)
	}
	defer admin.Close(ctx)
	ident := pgx.Identifier{dbName}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return nil, nil, fmt.Errorf("create database (the role needs CREATEDB; scripts/services.sh grants it): %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, directURL)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		// FORCE ends PgBouncer's idle server connections to the database. It refuses, for a
		// role that is not a superuser, while an autovacuum worker is in the database
		// ("must be a member of the role whose process is being terminated"), so try again
		// once the worker is likely done; a server-side wait has no event to block on.
		for attempt := range 10 {
			if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err == nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
			}
		}
	}
	if !opts.NoMigrations {
		if err := migrations.Up(ctx, p.DirectURL, nil); err != nil {
			drop()
			return nil, nil, err
		}
	}
	if p.Pool, err = PoolWithMode(ctx, p.URL, pgx.QueryExecModeExec, opts.MaxConns); err != nil {
		drop()
		return nil, nil, err
	}
	return p, func() { p.Pool.Close(); drop() }, nil
}

// PoolWithMode opens a pool on databaseURL whose connections use mode by default, capped at
// maxConns (default 8).
func PoolWithMode(ctx context.Context, databaseURL string, mode pgx.QueryExecMode, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.DefaultQueryExecMode = mode
	cfg.MaxConns = 8
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// withDatabase returns databaseURL (a postgres:// URL) naming database dbName instead.
func withDatabase(databaseURL, dbName string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("want a postgres:// URL")
	}
	u.Path = "/" + dbName
	u.RawPath = ""
	return u.String(), nil
}
