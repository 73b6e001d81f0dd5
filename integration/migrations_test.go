package integration_test

import (
	"context"
	"io/fs"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
