package migrations_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/migrations"
)

func emptyDB(t *testing.T, maxConns int32) *pgtest.DB {
	t.Helper()
	return pgtest.New(t, pgtest.URL(t), &pgtest.Options{NoMigrations: true, MaxConns: maxConns})
}

func newMigrator(t *testing.T, db migrations.DB, cfg *migrations.Config) *migrations.Migrator {
	t.Helper()
	m, err := migrations.New(db, cfg)
	require.NoError(t, err)
	return m
}

func tableIn(t *testing.T, pool *pgxpool.Pool, schema, name string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT FROM pg_tables WHERE schemaname = $1 AND tablename = $2)`, schema, name).Scan(&ok))
	return ok
}

func versions(steps []migrations.Step) []uint {
	var vs []uint
	for _, s := range steps {
		vs = append(vs, s.Version)
	}
	return vs
}

func allVersions() []uint {
	var vs []uint
	for _, m := range migrations.Migrations() {
		vs = append(vs, m.Version)
	}
	return vs
}

// Goroutines released together all call Up: each version is applied by exactly one of them,
// none fails, and the schema ends at the latest version.
func TestMigratorConcurrentUp(t *testing.T) {
	t.Parallel()
	const n = 8
	db := emptyDB(t, n)
	pgtest.Warm(t, db.Pool, n)
	m := newMigrator(t, db.Pool, nil)
	ctx := context.Background()

	start := make(chan struct{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied = map[uint]int{}
		errs    []error
	)
	for range n {
		wg.Go(func() {
			<-start
			res, err := m.Up(ctx)
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
			for _, s := range res.Steps {
				applied[s.Version]++
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
	for _, v := range allVersions() {
		assert.Equal(t, 1, applied[v], "version %d applied once", v)
	}
	v, dirty, err := m.Version(ctx)
	require.NoError(t, err)
	assert.Equal(t, migrations.Latest(), v)
	assert.False(t, dirty)
	var rows int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+migrations.DefaultMigrationsTable).Scan(&rows))
	assert.Equal(t, 1, rows, "one version row, as golang-migrate keeps it")
}

// Up on an up-to-date schema runs nothing and does not even rewrite the version row.
func TestMigratorUpToDateIsNoop(t *testing.T) {
	t.Parallel()
	db := emptyDB(t, 0)
	ctx := context.Background()
	m := newMigrator(t, db.Pool, nil)
	_, err := m.Up(ctx)
	require.NoError(t, err)
	xmin := func() string {
		var x string
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT xmin::text FROM `+migrations.DefaultMigrationsTable).Scan(&x))
		return x
	}
	before := xmin()
	res, err := m.Up(ctx)
	require.NoError(t, err)
	assert.Empty(t, res.Steps)
	assert.Equal(t, migrations.Latest(), res.From)
	assert.Equal(t, migrations.Latest(), res.To)
	assert.Equal(t, before, xmin())
}

// Down runs the down files newest first and drops the tables; Up brings them back.
func TestMigratorDownThenUp(t *testing.T) {
	t.Parallel()
	db := emptyDB(t, 0)
	ctx := context.Background()
	m := newMigrator(t, db.Pool, nil)

	res, err := m.Down(ctx)
	require.NoError(t, err, "Down on an empty schema")
	assert.Empty(t, res.Steps)
	assert.False(t, tableIn(t, db.Pool, db.Schema, migrations.DefaultMigrationsTable), "Down creates nothing")

	res, err = m.Up(ctx)
	require.NoError(t, err)
	assert.Equal(t, allVersions(), versions(res.Steps))
	for _, s := range res.Steps {
		assert.False(t, s.Down)
	}

	res, err = m.Down(ctx)
	require.NoError(t, err)
	want := allVersions()
	for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
		want[i], want[j] = want[j], want[i]
	}
	assert.Equal(t, want, versions(res.Steps))
	assert.Equal(t, migrations.Latest(), res.From)
	assert.Zero(t, res.To)
	for _, s := range res.Steps {
		assert.True(t, s.Down)
	}
	assert.False(t, tableIn(t, db.Pool, db.Schema, "dedupe_keys"))
	assert.False(t, tableIn(t, db.Pool, db.Schema, "fences"))
	v, _, err := m.Version(ctx)
	require.NoError(t, err)
	assert.Zero(t, v)

	_, err = m.Up(ctx)
	require.NoError(t, err)
	assert.True(t, tableIn(t, db.Pool, db.Schema, "dedupe_keys"))
	assert.True(t, tableIn(t, db.Pool, db.Schema, "fences"))
	assert.NoError(t, m.Validate(ctx))
}

// Migrate goes to a given version either way, one file at a time.
func TestMigratorMigrateTo(t *testing.T) {
	t.Parallel()
	db := emptyDB(t, 0)
	ctx := context.Background()
	m := newMigrator(t, db.Pool, nil)
	res, err := m.Migrate(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, []uint{1}, versions(res.Steps))
	assert.True(t, tableIn(t, db.Pool, db.Schema, "dedupe_keys"))
	assert.False(t, tableIn(t, db.Pool, db.Schema, "fences"))

	_, err = m.Up(ctx)
	require.NoError(t, err)
	res, err = m.Migrate(ctx, 1)
	require.NoError(t, err)
	var above1 []uint // every version after 1, newest first: the down steps from the latest
	for _, mig := range migrations.Migrations() {
		if mig.Version > 1 {
			above1 = append([]uint{mig.Version}, above1...)
		}
	}
	assert.Equal(t, above1, versions(res.Steps))
	assert.False(t, tableIn(t, db.Pool, db.Schema, "fences"))
	assert.True(t, tableIn(t, db.Pool, db.Schema, "dedupe_keys"))

	_, err = m.Migrate(ctx, 999)
	assert.ErrorContains(t, err, "no embedded migration has version 999")
}

// A file that fails rolls back whole: earlier files stay applied, the version names the last
// good one, and nothing is marked dirty.
func TestMigratorFailedFileRollsBack(t *testing.T) {
	t.Parallel()
	db := emptyDB(t, 0)
	ctx := context.Background()
	// 0002 creates fences; a table already there makes it fail.
	_, err := db.Pool.Exec(ctx, `CREATE TABLE fences (x int)`)
	require.NoError(t, err)
	m := newMigrator(t, db.Pool, nil)
	res, err := m.Up(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "0002_fences (up)")
	assert.Equal(t, []uint{1}, versions(res.Steps))
	v, dirty, err := m.Version(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint(1), v)
	assert.False(t, dirty)
	assert.ErrorIs(t, m.Validate(ctx), migrations.ErrBehind)
}

// A dirty flag (left by golang-migrate after a failed file) stops every change.
func TestMigratorRefusesDirty(t *testing.T) {
	t.Parallel()
	db := emptyDB(t, 0)
	ctx := context.Background()
	m := newMigrator(t, db.Pool, nil)
	_, err := m.Migrate(ctx, 1)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `UPDATE `+migrations.DefaultMigrationsTable+` SET dirty = true`)
	require.NoError(t, err)

	_, err = m.Up(ctx)
	assert.ErrorIs(t, err, migrations.ErrDirty)
	_, err = m.Down(ctx)
	assert.ErrorIs(t, err, migrations.ErrDirty)
	assert.ErrorIs(t, m.Validate(ctx), migrations.ErrDirty)
	v, dirty, err := m.Version(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint(1), v)
	assert.True(t, dirty)
	assert.False(t, tableIn(t, db.Pool, db.Schema, "fences"), "Up did not run")
	assert.True(t, tableIn(t, db.Pool, db.Schema, "dedupe_keys"), "Down did not run")

	// golang-migrate records a failed first migration as version -1, dirty.
	_, err = db.Pool.Exec(ctx, `UPDATE `+migrations.DefaultMigrationsTable+` SET version = -1`)
	require.NoError(t, err)
	_, err = m.Up(ctx)
	assert.ErrorIs(t, err, migrations.ErrDirty)
}

// Validate tells behind from ahead; Up refuses a schema from a newer binary.
func TestMigratorValidate(t *testing.T) {
	t.Parallel()
	db := emptyDB(t, 0)
	ctx := context.Background()
	m := newMigrator(t, db.Pool, nil)
	assert.ErrorIs(t, m.Validate(ctx), migrations.ErrBehind, "nothing applied")
	_, err := m.Migrate(ctx, 1)
	require.NoError(t, err)
	err = m.Validate(ctx)
	assert.ErrorIs(t, err, migrations.ErrBehind)
	assert.ErrorContains(t, err, "applied version 1")
	_, err = m.Up(ctx)
	require.NoError(t, err)
	require.NoError(t, m.Validate(ctx))

	_, err = db.Pool.Exec(ctx, `UPDATE `+migrations.DefaultMigrationsTable+` SET version = 99`)
	require.NoError(t, err)
	err = m.Validate(ctx)
	assert.ErrorIs(t, err, migrations.ErrAhead)
	assert.ErrorContains(t, err, "applied version 99")
	_, err = m.Up(ctx)
	assert.ErrorIs(t, err, migrations.ErrAhead)
	_, err = m.Down(ctx)
	assert.ErrorIs(t, err, migrations.ErrAhead)
}

// Config.Schema puts the tables and the version table in that schema, creating it, whatever
// the connection's search_path; MigrationsTable renames the version table.
func TestMigratorSchemaOption(t *testing.T) {
	t.Parallel()
	db := emptyDB(t, 0)
	ctx := context.Background()
	schema := db.Schema + "_own"
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	m := newMigrator(t, db.Pool, &migrations.Config{Schema: schema, MigrationsTable: "Toolkit Versions"})
	_, err := m.Up(ctx)
	require.NoError(t, err)
	for _, table := range []string{"dedupe_keys", "fences", "Toolkit Versions"} {
		assert.True(t, tableIn(t, db.Pool, schema, table), table)
		assert.False(t, tableIn(t, db.Pool, db.Schema, table), "%s not in the search_path schema", table)
	}
	require.NoError(t, m.Validate(ctx))
	other := newMigrator(t, db.Pool, nil)
	assert.ErrorIs(t, other.Validate(ctx), migrations.ErrBehind, "the default schema is another one")

	_, err = m.Down(ctx)
	require.NoError(t, err)
	assert.False(t, tableIn(t, db.Pool, schema, "dedupe_keys"))
}

// Every statement works whatever QueryExecMode the caller's pool uses (PgBouncer set-ups use
// Exec or the simple protocol).
func TestMigratorQueryExecModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			db := emptyDB(t, 0)
			cfg, err := pgxpool.ParseConfig(db.URL)
			require.NoError(t, err)
			cfg.ConnConfig.DefaultQueryExecMode = mode
			pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			ctx := context.Background()
			m := newMigrator(t, pool, nil)
			for range 2 {
				res, err := m.Up(ctx)
				require.NoError(t, err)
				assert.Equal(t, migrations.Latest(), res.To)
				v, dirty, err := m.Version(ctx)
				require.NoError(t, err)
				assert.Equal(t, migrations.Latest(), v)
				assert.False(t, dirty)
				require.NoError(t, m.Validate(ctx))
				_, err = m.Down(ctx)
				require.NoError(t, err)
			}
		})
	}
}

// New refuses what PostgreSQL would refuse or silently truncate.
func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := migrations.New(nil, nil)
	assert.ErrorIs(t, err, migrations.ErrNilDB)
	var pool *pgxpool.Pool // New does no I/O: a pool value is enough
	for _, c := range []struct {
		name string
		cfg  migrations.Config
		want string
	}{
		{"long schema", migrations.Config{Schema: strings.Repeat("s", 64)}, "longer than 63 bytes"},
		{"long table", migrations.Config{MigrationsTable: strings.Repeat("t", 64)}, "longer than 63 bytes"},
		{"NUL", migrations.Config{Schema: "a\x00b"}, "NUL"},
		{"bad UTF-8", migrations.Config{MigrationsTable: "a\xffb"}, "UTF-8"},
		{"reserved", migrations.Config{Schema: "PG_toolkit"}, "reserved"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := migrations.New(pool, &c.cfg)
			assert.ErrorContains(t, err, c.want)
		})
	}
	_, err = migrations.New(pool, &migrations.Config{Schema: strings.Repeat("s", 63), MigrationsTable: `odd "name"`})
	assert.NoError(t, err)
}

// A cancelled Up stops waiting for the lock and applies nothing.
func TestMigratorCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	db := emptyDB(t, 0)
	ctx := context.Background()
	var dbName string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current_database()`).Scan(&dbName))
	// The key golang-migrate's pgx5 driver uses, computed by golang-migrate itself.
	key, err := database.GenerateAdvisoryLockId("/"+dbName, db.Schema, migrations.DefaultMigrationsTable)
	require.NoError(t, err)
	holder, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(ctx) }()
	_, err = holder.Exec(ctx, `SELECT pg_advisory_xact_lock($1::bigint)`, key)
	require.NoError(t, err)

	m := newMigrator(t, db.Pool, nil)
	upCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := m.Up(upCtx)
		done <- err
	}()
	// Wait until Up's backend waits on the holder's lock, then cancel it.
	var holderPID uint32
	require.NoError(t, holder.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holderPID))
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx,
			`SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))`, int32(holderPID)).Scan(&n))
		return n == 1
	}, 30*time.Second, 5*time.Millisecond)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	require.NoError(t, holder.Rollback(ctx))
	v, _, err := m.Version(ctx)
	require.NoError(t, err)
	assert.Zero(t, v)
	assert.False(t, tableIn(t, db.Pool, db.Schema, "dedupe_keys"))
}
