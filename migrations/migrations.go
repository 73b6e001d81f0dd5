package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

//go:embed *.sql
var files embed.FS

// DefaultMigrationsTable is the table in which golang-migrate records the applied version of
// the toolkit's schema. It is deliberately not golang-migrate's own default
// ("schema_migrations"), so the toolkit's version never collides with a service's migrations.
const DefaultMigrationsTable = "pgonce_schema_migrations"

// Options configures Up, Down and Version. A nil *Options means the defaults.
type Options struct {
	// MigrationsTable is where the applied version is recorded, created in the connection's
	// current schema. Default DefaultMigrationsTable.
	MigrationsTable string
}

func (o *Options) table() string {
	if o == nil || o.MigrationsTable == "" {
		return DefaultMigrationsTable
	}
	return o.MigrationsTable
}

// FS returns the migration files (NNNN_name.up.sql / NNNN_name.down.sql) at the root of an
// fs.FS, for tools that read migrations from a file system.
func FS() fs.FS { return files }

// Source returns the migrations as a golang-migrate source driver (iofs), for callers who
// drive golang-migrate themselves:
//
//	src, _ := migrations.Source()
//	m, _ := migrate.NewWithSourceInstance("iofs", src, "pgx5://...?x-migrations-table=pgonce_schema_migrations")
func Source() (source.Driver, error) {
	return iofs.New(files, ".")
}

// Up applies every migration not yet applied to the database at databaseURL (a postgres://
// URL or key=value DSN, as pgx accepts). Applying an up-to-date schema is not an error.
// Tables are created in the connection's current schema (the first entry of search_path).
// Concurrent calls are serialised by golang-migrate's advisory lock.
func Up(ctx context.Context, databaseURL string, opts *Options) error {
	return run(ctx, databaseURL, opts, (*migrate.Migrate).Up)
}

// Down rolls back every applied migration, dropping the toolkit's tables and the data in them.
// Rolling back an empty schema is not an error.
func Down(ctx context.Context, databaseURL string, opts *Options) error {
	return run(ctx, databaseURL, opts, (*migrate.Migrate).Down)
}

// Version reports the applied schema version (0 when none is applied) and whether the last
// migration failed part-way (dirty), in which case it must be repaired by hand before Up.
func Version(ctx context.Context, databaseURL string, opts *Options) (version uint, dirty bool, err error) {
	err = run(ctx, databaseURL, opts, func(m *migrate.Migrate) error {
		var verr error
		version, dirty, verr = m.Version()
		if errors.Is(verr, migrate.ErrNilVersion) {
			return nil
		}
		return verr
	})
	return version, dirty, err
}

// run opens a golang-migrate instance on databaseURL, runs op, and closes everything.
// golang-migrate takes no context; cancelling ctx asks it to stop after the migration in
// progress (GracefulStop), so the schema is never left half-applied by a cancellation.
func run(ctx context.Context, databaseURL string, opts *Options, op func(*migrate.Migrate) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("migrations: parse database URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer func() {
		if db != nil {
			_ = db.Close()
		}
	}()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("migrations: connect: %w", err)
	}
	m, err := newMigrate(db, opts.table())
	if err != nil {
		return err
	}
	db = nil // m owns it now and closes it.
	defer func() {
		srcErr, dbErr := m.Close()
		if err == nil {
			err = errors.Join(srcErr, dbErr)
		}
	}()

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			select {
			case m.GracefulStop <- true:
			default:
			}
		case <-stop:
		}
	}()

	err = op(m)
	if errors.Is(err, migrate.ErrNoChange) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	return ctx.Err()
}

func newMigrate(db *sql.DB, table string) (*migrate.Migrate, error) {
	drv, err := pgxmigrate.WithInstance(db, &pgxmigrate.Config{MigrationsTable: table})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrations: open database driver: %w", err)
	}
	src, err := Source()
	if err != nil {
		_ = drv.Close()
		return nil, fmt.Errorf("migrations: open source: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		_ = drv.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return m, nil
}
