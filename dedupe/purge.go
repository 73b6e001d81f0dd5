package dedupe

import (
	"context"
	"fmt"
)

// DefaultPurgeBatch is the number of rows Purge deletes per statement when not told.
const DefaultPurgeBatch = 1000

// Purge deletes expired keys, oldest first, in statements of at most batchSize rows (0 means
// DefaultPurgeBatch) until none is left, and returns how many it deleted.
//
// Each batch is its own short statement over the expires_at index and skips rows that a
// request has locked (it is re-claiming them), so a purge never waits on requests and a
// request waits on a purge for one batch at most. Given a pool, every batch commits on its
// own; given a pgx.Tx, all batches belong to that transaction and hold their locks until it
// ends. Purge stops between batches when ctx is done, returning what it deleted so far and
// ctx.Err(). Run it from a ticker or a scheduled job; it is safe to run on several nodes.
//
// With LayoutGenerations, Purge instead rotates generations when one is due and truncates the
// one whose keys have all expired, ignoring batchSize; see Layout.
func (d *Deduper) Purge(ctx context.Context, db Execer, batchSize int) (int64, error) {
	if db == nil {
		return 0, ErrNilDB
	}
	if d.gen != nil {
		return d.purgeGenerations(ctx, db)
	}
	if batchSize <= 0 {
		batchSize = DefaultPurgeBatch
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tag, err := db.Exec(ctx, d.q.purge, batchSize)
		if err != nil {
			return total, fmt.Errorf("dedupe: purge: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batchSize) {
			return total, nil
		}
	}
}
