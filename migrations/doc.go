// Package migrations creates and upgrades the toolkit's PostgreSQL tables (dedupe_keys,
// fences) from SQL files embedded in the module, over the caller's pool.
//
// Run it at start-up, from every instance if you like:
//
//	m, err := migrations.New(pool, &migrations.Config{Schema: "pgonce"}) // nil: current schema
//	if err != nil {
//		log.Fatal(err) // a bad schema or table name
//	}
//	if _, err := m.Up(ctx); err != nil {
//		log.Fatal(err)
//	}
//
// or leave migrating to a deploy step (the pgonce CLI: pgonce migrate up) and check in a
// health probe with m.Validate(ctx). Up, Down and Version also exist as functions taking a
// database URL, which open and close one connection.
//
// Each migration runs in its own transaction, serialised by a transaction-scoped advisory lock
// taken first, so concurrent migrators apply each version exactly once, a failure rolls a file
// back whole, and no session state is needed: it works behind PgBouncer in transaction pooling
// mode and in every pgx QueryExecMode.
//
// # Files and the golang-migrate CLI
//
// The files (NNNN_name.up.sql and NNNN_name.down.sql) are golang-migrate files and are
// append-only: a released migration is never edited; changes come as new files. They use
// unqualified table names; the Migrator sets search_path to the schema for each file.
//
// The version is recorded in DefaultMigrationsTable ("pgonce_schema_migrations") in the same
// schema, in golang-migrate's format (version bigint primary key, dirty boolean; one row), not
// in golang-migrate's default table, so it never collides with a service's own migrations.
// The same files and table can therefore be driven by the golang-migrate CLI, with the schema
// given as search_path (the CLI does not create a missing schema):
//
//	migrate -source 'file://migrations' \
//	  -database 'pgx5://user:pass@host/db?search_path=pgonce&x-migrations-table=pgonce_schema_migrations' up
//
// or from Go through Source (an iofs source driver) or FS. The Migrator takes the same
// advisory lock key as golang-migrate's pgx5 driver, so the two exclude each other. The only
// difference: golang-migrate marks the table dirty before each file and clears the flag after
// it, so a file that fails under the CLI leaves the table dirty; the Migrator then refuses to
// run (ErrDirty) until the schema is repaired and the flag cleared.
//
// # Schema
//
// See the .up.sql files for every column's documentation.
//
//   - dedupe_keys: one row per (scope, key) with the request fingerprint, the stored response
//     (status, headers, body), created_at and expires_at; primary key (scope, key); an index
//     on expires_at for purging.
//   - fences: the highest fencing token per resource, checked by pessimistic.Fence.
//
// New refuses bad input before any SQL runs with an error matching ErrInvalid (a nil DB also
// matches ErrNilDB): the same rule in every pgonce package.
package migrations
