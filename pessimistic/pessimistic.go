package pessimistic

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgonce/pgonce/internal/inputerr"
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

// Input errors, returned before any SQL runs. Both also match ErrInvalid, which every input
// error of the package matches.
var (
	// ErrNilFunc means a function argument was nil.
	ErrNilFunc = inputerr.New(ErrInvalid, "pessimistic: nil function")
	// ErrNilDB means the pool, connection or transaction argument was nil.
	ErrNilDB = inputerr.New(ErrInvalid, "pessimistic: nil database handle")
)

// cleanupTimeout bounds the statements that undo or release something after ctx is done.
const cleanupTimeout = 5 * time.Second

// cancelOrphan stops the server-side wait of a lock statement that failed because ctx was
// done. pgx's default reaction to a done context is to close the connection without telling
// the server, whose backend then stays queued for the lock and, once the lock is freed,
// takes it until it notices its client is gone: a phantom holder that turns away or delays
// the next real one. A cancel request ends that wait. Only for a closed connection: on a live
// one a late cancel could hit the next statement. Cost: nothing unless ctx was done; then one
// short-lived connection to the server.
func cancelOrphan(ctx context.Context, conn *pgconn.PgConn, err error) {
	if err == nil || ctx.Err() == nil || conn == nil || !conn.IsClosed() {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = conn.CancelRequest(cctx)
}
