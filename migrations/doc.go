// Package migrations holds the toolkit's PostgreSQL schema as golang-migrate files embedded
// in the module, and a small API to apply them.
//
// The files (NNNN_name.up.sql and NNNN_name.down.sql) are append-only: a released migration
// is never edited; changes come as new files. Run them from Go at start-up:
//
//	if err := migrations.Up(ctx, os.Getenv("DATABASE_URL"), nil); err != nil {
//		log.Fatal(err)
//	}
//
// or with your own golang-migrate set-up through Source (an iofs source driver) or FS. The
// applied version is recorded in DefaultMigrationsTable ("pgonce_schema_migrations"), not in
// golang-migrate's default table, so it never collides with a service's own migrations.
//
// Schema (see the .up.sql files for every column's documentation):
//
//   - dedupe_keys: one row per (scope, key) with the request fingerprint, the stored response
//     (status, headers, body), created_at and expires_at; primary key (scope, key); an index
//     on expires_at for purging.
package migrations
