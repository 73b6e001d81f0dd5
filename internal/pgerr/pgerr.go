// Package pgerr is the one place where the toolkit maps PostgreSQL errors to meaning.
//
// Every package that needs to know why a statement failed asks here, by SQLSTATE code
// (never by message text), so the mapping is consistent and reviewed once.
package pgerr

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes the toolkit acts on (names as in PostgreSQL's errcodes.txt).
const (
	UniqueViolation      = "23505" // unique_violation
	CheckViolation       = "23514" // check_violation
	InFailedTransaction  = "25P02" // in_failed_sql_transaction
	SerializationFailure = "40001" // serialization_failure
	DeadlockDetected     = "40P01" // deadlock_detected
	LockNotAvailable     = "55P03" // lock_not_available
	QueryCanceled        = "57014" // query_canceled (statement_timeout or a cancel request)
	AdminShutdown        = "57P01" // admin_shutdown (pg_terminate_backend, server stop)
	UndefinedTable       = "42P01" // undefined_table
)

// Code returns the SQLSTATE of the first *pgconn.PgError in err's chain, or "" if there is none.
func Code(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Is reports whether err carries a PostgreSQL error with the given SQLSTATE.
func Is(err error, code string) bool {
	return err != nil && Code(err) == code
}

// Retryable reports whether re-running the whole transaction may succeed: a serialization
// failure or a deadlock, the two errors PostgreSQL documents as "retry the transaction".
func Retryable(err error) bool {
	switch Code(err) {
	case SerializationFailure, DeadlockDetected:
		return true
	}
	return false
}
