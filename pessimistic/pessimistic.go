package pessimistic

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
)

// Beginner opens transactions; *pgxpool.Pool, *pgx.Conn and pgx.Tx (a savepoint) satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// TxBeginner opens transactions with options; *pgxpool.Pool and *pgx.Conn satisfy it, pgx.Tx
// does not: only the owner of a transaction can rerun it whole (RetryTx).
type TxBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Input errors, returned before any SQL runs.
var (
	ErrNilFunc = errors.New("pessimistic: nil function")
	ErrNilDB   = errors.New("pessimistic: nil database handle")
)

// cleanupTimeout bounds the statements that undo or release something after ctx is done.
const cleanupTimeout = 5 * time.Second

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}
