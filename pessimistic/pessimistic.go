package pessimistic

import (
	"context"
	"errors"
	"reflect"

	"github.com/jackc/pgx/v5"
)

// Beginner opens transactions; *pgxpool.Pool, *pgx.Conn and pgx.Tx (a savepoint) satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Input errors, returned before any SQL runs.
var (
	ErrNilFunc = errors.New("pessimistic: nil function")
	ErrNilDB   = errors.New("pessimistic: nil database handle")
)

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}
