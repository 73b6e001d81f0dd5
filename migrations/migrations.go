package migrations

import (
	"context"
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
)

// Options configures Up, Down and Version, the functions that take a database URL. It is
// Config under the name those functions have always used. A nil *Options means the defaults.
type Options = Config

// Source returns the migrations as a golang-migrate source driver (iofs), for callers who
// drive golang-migrate themselves:
//
//	src, _ := migrations.Source()
//	m, _ := migrate.NewWithSourceInstance("iofs", src, "pgx5://...?x-migrations-table=pgonce_schema_migrations")
func Source() (source.Driver, error) {
	return iofs.New(files, ".")
}

// Up opens one connection to databaseURL (a postgres:// URL or key=value DSN, as pgx
// accepts), applies every migration not yet applied as Migrator.Up does, and closes it.
func Up(ctx context.Context, databaseURL string, opts *Options) error {
	return withURL(ctx, databaseURL, opts, func(m *Migrator) error {
		_, err := m.Up(ctx)
		return err
	})
}

// Down opens one connection to databaseURL, rolls back every applied migration as
// Migrator.Down does (dropping the toolkit's tables and their data), and closes it.
func Down(ctx context.Context, databaseURL string, opts *Options) error {
	return withURL(ctx, databaseURL, opts, func(m *Migrator) error {
		_, err := m.Down(ctx)
		return err
	})
}

// Version opens one connection to databaseURL and reports the applied version as
// Migrator.Version does.
func Version(ctx context.Context, databaseURL string, opts *Options) (version uint, dirty bool, err error) {
	err = withURL(ctx, databaseURL, opts, func(m *Migrator) error {
		version, dirty, err = m.Version(ctx)
		return err
	})
	return version, dirty, err
}

func withURL(ctx context.Context, databaseURL string, opts *Options, op func(*Migrator) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("migrations: parse database URL: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("migrations: connect: %w", err)
	}
	defer func() { err = errors.Join(err, conn.Close(context.WithoutCancel(ctx))) }()
	m, err := New(conn, opts)
	if err != nil {
		return err
	}
	return op(m)
}
