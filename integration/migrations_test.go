package integration_test

import (
	"context"
	"io/fs"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/migrations"
)

func tableExists(t *testing.T, db *pgtest.DB, name string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT FROM pg_tables WHERE schemaname = $1 AND tablename = $2)`, db.Schema, name).Scan(&ok))
	return ok
}

// Up, Down and Up again on a fresh schema; the version is recorded in the toolkit's own table.
func TestMigrationsUpDownUp(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{NoMigrations: true})
	ctx := context.Background()
	v, dirty, err := migrations.Version(ctx, db.URL, nil)
	require.NoError(t, err)
	assert.Zero(t, v)
	assert.False(t, dirty)

	for round := range 2 {
		require.NoError(t, migrations.Up(ctx, db.URL, nil), "round %d", round)
		require.NoError(t, migrations.Up(ctx, db.URL, nil), "Up on an up-to-date schema is not an error")
		v, dirty, err = migrations.Version(ctx, db.URL, nil)
		require.NoError(t, err)
		assert.Equal(t, latestVersion(t), v)
		assert.False(t, dirty)
		assert.True(t, tableExists(t, db, "dedupe_keys"))
		assert.True(t, tableExists(t, db, migrations.DefaultMigrationsTable))
		assert.False(t, tableExists(t, db, "schema_migrations"), "golang-migrate's default table is left to the service")

		require.NoError(t, migrations.Down(ctx, db.URL, nil))
		assert.False(t, tableExists(t, db, "dedupe_keys"), "down reverses up")
		v, _, err = migrations.Version(ctx, db.URL, nil)
		require.NoError(t, err)
		assert.Zero(t, v)
	}
	require.NoError(t, migrations.Up(ctx, db.URL, nil))
	assert.True(t, tableExists(t, db, "dedupe_keys"))
}

// A custom migrations table, and the embedded files driven by golang-migrate directly.
func TestMigrationsCustomTableAndSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := harness.DB(t, &pgtest.Options{NoMigrations: true})
	require.NoError(t, migrations.Up(ctx, db.URL, &migrations.Options{MigrationsTable: "toolkit_versions"}))
	assert.True(t, tableExists(t, db, "toolkit_versions"))
	assert.False(t, tableExists(t, db, migrations.DefaultMigrationsTable))

	other := harness.DB(t, &pgtest.Options{NoMigrations: true})
	src, err := migrations.Source()
	require.NoError(t, err)
	m, err := migrate.NewWithSourceInstance("iofs", src, pgx5URL(other.URL)+"&x-migrations-table=cli_versions")
	require.NoError(t, err)
	require.NoError(t, m.Up())
	srcErr, dbErr := m.Close()
	require.NoError(t, srcErr)
	require.NoError(t, dbErr)
	assert.True(t, tableExists(t, other, "dedupe_keys"))
	assert.True(t, tableExists(t, other, "cli_versions"))
}

// Cancelled contexts and bad URLs fail cleanly.
func TestMigrationsBadInput(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, migrations.Up(ctx, "postgres://localhost/x", nil), context.Canceled)
	assert.Error(t, migrations.Up(context.Background(), "::not a url::", nil))
}

// latestVersion is the highest NNNN prefix among the embedded migration files.
func latestVersion(t *testing.T) uint {
	t.Helper()
	entries, err := fs.ReadDir(migrations.FS(), ".")
	require.NoError(t, err)
	var latest uint
	for _, e := range entries {
		n, err := strconv.ParseUint(strings.SplitN(e.Name(), "_", 2)[0], 10, 32)
		require.NoError(t, err, e.Name())
		latest = max(latest, uint(n))
	}
	require.NotZero(t, latest)
	return latest
}

// pgx5URL rewrites a postgres:// URL for golang-migrate's pgx v5 driver.
func pgx5URL(u string) string {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		panic("not a URL: " + u)
	}
	return "pgx5://" + rest
}

// The Migrator and the golang-migrate CLI (here its library, as the CLI uses it) share one
// version table: each continues where the other stopped, in the Migrator's Schema given to
// golang-migrate as search_path.
func TestMigrationsGolangMigrateInterop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := harness.DB(t, &pgtest.Options{NoMigrations: true})
	schema := db.Schema + "_gm"
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	m, err := migrations.New(db.Pool, &migrations.Config{Schema: schema})
	require.NoError(t, err)
	_, err = m.Migrate(ctx, 1)
	require.NoError(t, err)

	src, err := migrations.Source()
	require.NoError(t, err)
	gm, err := migrate.NewWithSourceInstance("iofs", src,
		pgx5URL(pgtest.WithSearchPath(db.URL, schema))+"&x-migrations-table="+migrations.DefaultMigrationsTable)
	require.NoError(t, err)
	defer gm.Close()
	v, dirty, err := gm.Version()
	require.NoError(t, err, "golang-migrate reads the Migrator's version")
	assert.Equal(t, uint(1), v)
	assert.False(t, dirty)
	require.NoError(t, gm.Up(), "golang-migrate applies what the Migrator has not")

	require.NoError(t, m.Validate(ctx), "the Migrator reads golang-migrate's version")
	require.NoError(t, gm.Down())
	v, _, err = m.Version(ctx)
	require.NoError(t, err)
	assert.Zero(t, v, "golang-migrate's nil version (no row)")
	res, err := m.Up(ctx)
	require.NoError(t, err)
	assert.Len(t, res.Steps, len(migrations.Migrations()))
	assert.True(t, tableExists(t, &pgtest.DB{Pool: db.Pool, Schema: schema}, "dedupe_keys"))

	// A file that fails under golang-migrate leaves the table dirty; the Migrator refuses.
	require.NoError(t, gm.Force(1))
	_, err = db.Pool.Exec(ctx, `UPDATE `+pgx.Identifier{schema, migrations.DefaultMigrationsTable}.Sanitize()+` SET dirty = true`)
	require.NoError(t, err)
	_, err = m.Up(ctx)
	assert.ErrorIs(t, err, migrations.ErrDirty)
}

// The Migrator's transaction-scoped lock is golang-migrate's lock key: while the golang-migrate
// pgx5 driver (as the CLI opens it, from a URL) holds its session lock, Up waits.
func TestMigrationsLockSharedWithGolangMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := harness.DB(t, &pgtest.Options{NoMigrations: true})
	drv, err := database.Open(pgx5URL(db.URL) + "&x-migrations-table=" + migrations.DefaultMigrationsTable)
	require.NoError(t, err)
	defer drv.Close()
	require.NoError(t, drv.Lock())

	var dbName string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current_database()`).Scan(&dbName))
	key, err := database.GenerateAdvisoryLockId("/"+dbName, db.Schema, migrations.DefaultMigrationsTable)
	require.NoError(t, err)
	var holder int32
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = $1::bigint::oid AND objsubid = 1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, key).Scan(&holder))

	m, err := migrations.New(db.Pool, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := m.Up(ctx)
		done <- err
	}()
	waitBlockedBy(t, db.Pool, holder, 1)
	select {
	case err := <-done:
		t.Fatalf("Up returned while golang-migrate held the lock: %v", err)
	default:
	}
	require.NoError(t, drv.Unlock())
	require.NoError(t, <-done)
	require.NoError(t, m.Validate(ctx))
}

// The costs the Migrator's doc states: Version two round trips; Up with nothing to do five
// (resolve, BEGIN, lock, read, COMMIT); one migration seven plus the resolve (BEGIN, lock,
// read, search_path, file, record, COMMIT). The file body goes through pgconn, which the
// tracer does not see, hence one fewer counted.
func TestMigratorRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := harness.DB(t, &pgtest.Options{NoMigrations: true})
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	rt := &roundTrips{}
	cfg.ConnConfig.Tracer = rt
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	m, err := migrations.New(pool, nil)
	require.NoError(t, err)
	all := migrations.Migrations()
	_, err = m.Migrate(ctx, all[len(all)-2].Version) // one version short of the latest
	require.NoError(t, err)

	count := func(f func()) int64 {
		before := rt.n.Load()
		f()
		return rt.n.Load() - before
	}
	assert.Equal(t, int64(1+7-1), count(func() {
		res, err := m.Up(ctx)
		require.NoError(t, err)
		require.Len(t, res.Steps, 1)
	}), "one migration")
	assert.Equal(t, int64(5), count(func() {
		_, err := m.Up(ctx)
		require.NoError(t, err)
	}), "nothing to do")
	assert.Equal(t, int64(2), count(func() {
		_, _, err := m.Version(ctx)
		require.NoError(t, err)
	}), "Version")
}

// The schema the migrator puts the tables in is the one dedupe.Options.Schema names: Do finds
// its table there even when search_path does not lead to it.
func TestDedupeInMigratedSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := harness.DB(t, &pgtest.Options{NoMigrations: true})
	schema := db.Schema + "_keys"
	m, err := migrations.New(db.Pool, &migrations.Config{Schema: schema})
	require.NoError(t, err)
	_, err = m.Up(ctx)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})

	d := dedupe.New(&dedupe.Options{Schema: schema})
	req := dedupe.Request{Scope: "s", Key: "k"}
	ok := func(context.Context, pgx.Tx) (dedupe.Response, error) { return dedupe.Response{Status: 201}, nil }
	_, err = d.Do(ctx, db.Pool, req, ok)
	require.NoError(t, err)
	res, err := d.Do(ctx, db.Pool, req, ok)
	require.NoError(t, err)
	assert.Equal(t, dedupe.SourcePostgres, res.Source)
	assert.Equal(t, 1, count(t, db.Pool, `SELECT count(*) FROM `+pgx.Identifier{schema, "dedupe_keys"}.Sanitize()))

	_, err = dedupe.New(nil).Do(ctx, db.Pool, req, ok)
	require.Error(t, err, "search_path does not lead to the table")
}
