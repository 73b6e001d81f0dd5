package migrations

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// DefaultMigrationsTable is the table in which the applied version of the toolkit's schema is
// recorded. It is deliberately not golang-migrate's own default ("schema_migrations"), so the
// toolkit's version never collides with a service's migrations.
const DefaultMigrationsTable = "pgonce_schema_migrations"

// DB is what a Migrator needs of a connection. *pgxpool.Pool and *pgx.Conn satisfy it, in any
// pgx QueryExecMode, also behind PgBouncer in transaction pooling mode.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Config configures a Migrator. A nil *Config means the defaults.
type Config struct {
	// Schema is where the toolkit's tables and the version table live; Up creates it when it
	// is missing. Default: the connection's current schema (the first existing schema of
	// search_path), as golang-migrate does.
	Schema string

	// MigrationsTable records the applied version, in Schema. Default DefaultMigrationsTable.
	MigrationsTable string
}

// Migrator applies the embedded migrations to one schema through the caller's pool.
// It is safe for concurrent use, and several processes may run it at once.
type Migrator struct {
	db     DB
	schema string // "" means the connection's current schema, resolved per call
	table  string
}

// maxIdentLen is PostgreSQL's NAMEDATALEN-1: longer identifiers are silently truncated, so
// two long names could name one table.
const maxIdentLen = 63

// New returns a Migrator for db. It checks cfg and does no I/O: a bad schema or table name
// fails here, not at the first Up.
func New(db DB, cfg *Config) (*Migrator, error) {
	if db == nil {
		return nil, ErrNilDB
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.MigrationsTable == "" {
		c.MigrationsTable = DefaultMigrationsTable
	}
	if err := checkIdent("migrations table", c.MigrationsTable); err != nil {
		return nil, err
	}
	if c.Schema != "" {
		if err := checkIdent("schema", c.Schema); err != nil {
			return nil, err
		}
		// CREATE SCHEMA refuses these; say so before any migration runs.
		if strings.HasPrefix(strings.ToLower(c.Schema), "pg_") {
			return nil, fmt.Errorf("%w: schema %q: names starting with pg_ are reserved by PostgreSQL", ErrInvalid, c.Schema)
		}
	}
	return &Migrator{db: db, schema: c.Schema, table: c.MigrationsTable}, nil
}

func checkIdent(what, s string) error {
	switch {
	case len(s) > maxIdentLen:
		return fmt.Errorf("%w: %s %q is longer than %d bytes", ErrInvalid, what, s, maxIdentLen)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s %q contains a NUL byte", ErrInvalid, what, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalid, what, s)
	}
	return nil
}

// Result says what Up, Down or Migrate did. Each step committed on its own: when an error is
// returned with a Result, Steps lists the migrations that were applied before it.
type Result struct {
	// From and To are the schema's versions before this call's first step and after its
	// last (0: no migration applied).
	From, To uint
	// Steps are the migrations this call ran, in order: up files when going up, down files
	// when going down. Empty when the schema was already at the target (another process may
	// have applied them: each version is applied by exactly one caller).
	Steps []Step
}

// Step is one migration file run in its own transaction.
type Step struct {
	// Version and Name identify the migration (Migration.Version, Migration.Name).
	Version uint
	Name    string
	// Down is true when the step ran the down file.
	Down bool
	// Duration is the time from before the file ran to its commit, lock wait excluded.
	Duration time.Duration
}

// Up applies every embedded migration not yet applied, each in its own transaction. An
// up-to-date schema is not an error (no step runs); a schema at a version this binary does
// not know is (ErrAhead), as is a dirty one (ErrDirty). Cost: one round trip to resolve the
// schema, then per migration about seven (BEGIN, lock, read version, search_path, file,
// record version, COMMIT) with the lock held until COMMIT; five in all when nothing is due.
func (m *Migrator) Up(ctx context.Context) (*Result, error) { return m.Migrate(ctx, Latest()) }

// Down rolls back every applied migration, newest first, each in its own transaction,
// dropping the toolkit's tables and the data in them. The version table stays, empty. An
// empty schema is not an error.
func (m *Migrator) Down(ctx context.Context) (*Result, error) { return m.Migrate(ctx, 0) }

// Migrate moves the schema to version (one of the embedded versions, or 0 for none) by
// running up or down files one at a time.
//
// Each file runs in its own transaction, whose first statement takes a transaction-scoped
// advisory lock (pg_advisory_xact_lock), so concurrent migrators serialise without holding a
// session (this works behind PgBouncer in transaction pooling), and a failed or cancelled
// migration rolls back whole: the schema is never left half-applied and never marked dirty.
// The lock key is the one golang-migrate's pgx5 driver takes (its session lock) when opened
// with the same database URL path, schema and table, so this and the golang-migrate CLI also
// exclude each other. The lock is held for the length of one file.
func (m *Migrator) Migrate(ctx context.Context, version uint) (*Result, error) {
	if version != 0 && index(version) < 0 {
		return nil, fmt.Errorf("%w: no embedded migration has version %d (latest is %d)", ErrInvalid, version, Latest())
	}
	t, err := m.resolve(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	for first := true; ; first = false {
		done, err := m.step(ctx, t, version, res, first)
		if err != nil {
			return res, err
		}
		if done {
			return res, nil
		}
		t.exists = true
	}
}

// SQL run by the Migrator. %[1]s is the version table, sanitised; parameters are cast so that
// no statement depends on the server describing its parameter types (QueryExecModeExec and
// the simple protocol).
const (
	// sqlResolve names the schema (the configured one or current_schema()) and says whether
	// the version table exists in it.
	sqlResolve = `SELECT current_database()::text, s.name,
	to_regclass(quote_ident(s.name) || '.' || quote_ident($2::text)) IS NOT NULL
FROM (SELECT coalesce(nullif($1::text, ''), current_schema()::text) AS name) s`
	sqlLock          = `SELECT pg_advisory_xact_lock($1::bigint)`
	sqlCreateSchema  = `CREATE SCHEMA IF NOT EXISTS %s`
	sqlCreateTable   = `CREATE TABLE IF NOT EXISTS %[1]s (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)`
	sqlReadVersion   = `SELECT version, dirty FROM %[1]s LIMIT 1`
	sqlSearchPath    = `SELECT set_config('search_path', $1::text, true)`
	sqlSetVersion    = `WITH cleared AS (DELETE FROM %[1]s) INSERT INTO %[1]s (version, dirty) VALUES ($1::bigint, false)`
	sqlClearVersion  = `DELETE FROM %[1]s`
	advisoryLockSalt = 1486364155 // golang-migrate's database.advisoryLockIDSalt
)

// target is the resolved place a Migrator works on.
type target struct {
	database, schema, table string
	exists                  bool // the version table existed when last looked at
}

func (t *target) versionTable() string { return pgx.Identifier{t.schema, t.table}.Sanitize() }

// lockKey is golang-migrate's GenerateAdvisoryLockId(databaseName, schema, table) as its pgx5
// driver calls it when opened from a URL: databaseName is the URL's path, slash included.
func (t *target) lockKey() int64 {
	sum := crc32.ChecksumIEEE([]byte(t.schema + "\x00" + t.table + "\x00/" + t.database))
	return int64(sum * advisoryLockSalt)
}

func (m *Migrator) resolve(ctx context.Context) (*target, error) {
	t := &target{table: m.table}
	var schema *string
	if err := m.db.QueryRow(ctx, sqlResolve, m.schema, m.table).Scan(&t.database, &schema, &t.exists); err != nil {
		return nil, fmt.Errorf("migrations: resolve schema: %w", err)
	}
	if schema == nil {
		return nil, errors.New("migrations: no schema: search_path names no existing schema; set Config.Schema")
	}
	t.schema = *schema
	return t, nil
}

// step runs at most one migration towards version in one transaction and reports whether the
// schema is at version.
func (m *Migrator) step(ctx context.Context, t *target, version uint, res *Result, first bool) (done bool, err error) {
	tx, err := m.db.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("migrations: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if _, err := tx.Exec(ctx, sqlLock, t.lockKey()); err != nil {
		return false, fmt.Errorf("migrations: lock: %w", err)
	}
	table := t.versionTable()
	if !t.exists {
		if version == 0 {
			// Nothing was ever applied here; do not create anything to say so.
			res.From, res.To = 0, 0
			return true, tx.Commit(ctx)
		}
		if m.schema != "" {
			if _, err := tx.Exec(ctx, fmt.Sprintf(sqlCreateSchema, pgx.Identifier{t.schema}.Sanitize())); err != nil {
				return false, fmt.Errorf("migrations: create schema %s: %w", t.schema, err)
			}
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(sqlCreateTable, table)); err != nil {
			return false, fmt.Errorf("migrations: create version table %s: %w", table, err)
		}
	}
	current, dirty, err := readVersion(ctx, tx, table)
	if err != nil {
		return false, err
	}
	if first {
		res.From = current
	}
	res.To = current
	if dirty {
		return false, fmt.Errorf("%w (version %d in %s)", ErrDirty, current, table)
	}
	if current == version {
		return true, tx.Commit(ctx)
	}
	i := index(current)
	if current != 0 && i < 0 {
		return false, fmt.Errorf("%w: version %d in %s, latest embedded is %d", ErrAhead, current, table, Latest())
	}
	var (
		mig  Migration
		body string
		next uint
		down = current > version
	)
	if down {
		mig, body = all[i], all[i].down
		if i > 0 {
			next = all[i-1].Version
		}
	} else {
		mig = all[i+1]
		body, next = mig.up, mig.Version
	}
	start := time.Now()
	// The files use unqualified names; this makes them land in (or drop from) t.schema only,
	// until the transaction ends.
	if _, err := tx.Exec(ctx, sqlSearchPath, pgx.Identifier{t.schema}.Sanitize()); err != nil {
		return false, fmt.Errorf("migrations: set search_path: %w", err)
	}
	// A file holds several statements: only the simple protocol runs them in one call.
	if _, err := tx.Conn().PgConn().Exec(ctx, body).ReadAll(); err != nil {
		return false, fmt.Errorf("migrations: %04d_%s (%s): %w", mig.Version, mig.Name, direction(down), err)
	}
	if next == 0 {
		_, err = tx.Exec(ctx, fmt.Sprintf(sqlClearVersion, table))
	} else {
		_, err = tx.Exec(ctx, fmt.Sprintf(sqlSetVersion, table), int64(next))
	}
	if err != nil {
		return false, fmt.Errorf("migrations: record version %d: %w", next, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("migrations: commit %04d_%s (%s): %w", mig.Version, mig.Name, direction(down), err)
	}
	res.To = next
	res.Steps = append(res.Steps, Step{Version: mig.Version, Name: mig.Name, Down: down, Duration: time.Since(start)})
	return next == version, nil
}

func direction(down bool) string {
	if down {
		return "down"
	}
	return "up"
}

// querier is what readVersion needs: a pool, a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readVersion reads golang-migrate's encoding: no row is no version; a row with version -1
// is no version, dirty (a first migration that failed).
func readVersion(ctx context.Context, q querier, table string) (version uint, dirty bool, err error) {
	var v int64
	err = q.QueryRow(ctx, fmt.Sprintf(sqlReadVersion, table)).Scan(&v, &dirty)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("migrations: read version from %s: %w", table, err)
	case v < 0:
		return 0, dirty, nil
	}
	return uint(v), dirty, nil
}

// Version reports the applied schema version (0 when none is applied) and whether it is
// marked dirty (see ErrDirty). It creates nothing and takes no lock, so a read-only role can
// call it. Cost: two round trips.
func (m *Migrator) Version(ctx context.Context) (version uint, dirty bool, err error) {
	t, err := m.resolve(ctx)
	if err != nil || !t.exists {
		return 0, false, err
	}
	return readVersion(ctx, m.db, t.versionTable())
}

// Validate returns nil when the schema is exactly at Latest and not dirty, and otherwise an
// error wrapping ErrBehind, ErrAhead or ErrDirty that names both versions: for health checks
// and for services that leave migrating to a deploy step. Cost: as Version.
func (m *Migrator) Validate(ctx context.Context) error {
	v, dirty, err := m.Version(ctx)
	switch {
	case err != nil:
		return err
	case dirty:
		return fmt.Errorf("%w (version %d)", ErrDirty, v)
	case v < Latest():
		return fmt.Errorf("%w: applied version %d, latest embedded %d; run migrations.Up or pgonce migrate up", ErrBehind, v, Latest())
	case v > Latest() || (v != 0 && index(v) < 0):
		return fmt.Errorf("%w: applied version %d, latest embedded %d", ErrAhead, v, Latest())
	}
	return nil
}
