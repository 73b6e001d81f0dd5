package migrations

import (
	"errors"

	"github.com/pgonce/pgonce/internal/inputerr"
)

// Outcomes that callers branch on. Errors returned by this package wrap them with the
// versions involved; test with errors.Is.
var (
	// ErrDirty means the version table records a migration that failed part-way (dirty=true).
	// This package never leaves a schema dirty, since each migration runs in one transaction;
	// the flag comes from another tool (golang-migrate). Repair the schema by hand, then
	// clear the flag (UPDATE pgonce_schema_migrations SET dirty = false, or
	// migrate force VERSION).
	ErrDirty = errors.New("migrations: schema is dirty: a migration failed part-way; repair it by hand and clear the dirty flag")

	// ErrBehind means migrations embedded in this binary are not yet applied (Validate).
	ErrBehind = errors.New("migrations: schema is behind this binary's migrations")

	// ErrAhead means the schema has a version this binary does not know: a newer binary
	// migrated it. Up and Validate return it; Down cannot roll back what it has no file for.
	ErrAhead = errors.New("migrations: schema is ahead of this binary's migrations")

	// ErrInvalid is matched by every input error (a nil DB, an invalid Config): New refuses
	// bad input before any SQL runs.
	ErrInvalid = errors.New("migrations: invalid argument")

	// ErrNilDB is returned by New when given no database; it also matches ErrInvalid.
	ErrNilDB = inputerr.New(ErrInvalid, "migrations: nil database handle")
)
