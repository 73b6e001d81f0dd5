// Package migrations holds the payment provider's own schema, applied after the toolkit's and
// recorded in its own version table (paysvc.MigrationsTable), so it can share a database or a
// schema with the order service.
package migrations

import "embed"

// FS holds the NNNN_name.{up,down}.sql files.
//
//go:embed *.sql
var FS embed.FS
