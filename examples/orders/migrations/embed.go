// Package migrations holds the order service's own schema, applied after the toolkit's.
package migrations

import "embed"

// FS holds the NNNN_name.{up,down}.sql files.
//
//go:embed *.sql
var FS embed.FS
