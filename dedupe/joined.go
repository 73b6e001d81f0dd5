package dedupe

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// joined runs Do inside the caller's transaction, within a savepoint.
func (d *Deduper) joined(ctx context.Context, tx pgx.Tx, req Request, ttlMicros int64, fn Func) (Result, error) {
	if tx.Conn() == nil || tx.Conn().PgConn().TxStatus() != 'T' {
		return Result{}, fmt.Errorf("%w: the transaction to join is not open and healthy", ErrTxEnded)
	}
	// Until Do's part is released into the caller's transaction, any return (and a panic in
	// fn, since deferred calls run while panicking) rolls back to the savepoint: the key is
	// freed and the caller's transaction is as it was before Do.
	undo := true
	defer func() {
		if undo {
			undoSavepoint(ctx, tx)
		}
	}()

	stored, expiresAt, err := d.claim(ctx, &claimTx{Tx: tx, savepoint: true}, req, ttlMicros)
	if err != nil {
		return Result{}, err
	}
	if stored != nil {
		// Nothing was written; rolling back to the savepoint also restores lock_timeout.
		undo = false
		if _, err := tx.Exec(ctx, sqlUndoSavepoint); err != nil {
			return Result{}, err
		}
		return Result{Response: *stored, Source: SourcePostgres, ExpiresAt: expiresAt}, nil
	}
	resp, err := fn(ctx, tx)
	if err != nil {
		return Result{}, err
	}
	if err := d.checkAfterFn(tx, resp); err != nil {
		return Result{}, err
	}
	b := &pgx.Batch{}
	if err := d.queueStore(b, req, resp); err != nil {
		return Result{}, err
	}
	b.Queue(sqlReleaseSavepoint)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return Result{}, err
	}
	undo = false
	return Result{Response: resp, ExpiresAt: expiresAt}, nil
}

// undoSavepoint rolls the caller's transaction back to Do's savepoint and releases it.
func undoSavepoint(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, _ = tx.Exec(ctx, sqlUndoSavepoint)
}
