package dedupe

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/internal/pgerr"
	"github.com/pgonce/pgonce/internal/tracewait"
)

// errClaimLost: in claim-last mode, a request with the same key committed while fn ran; this
// attempt rolled back and the next round replays the winner's response.
var errClaimLost = errors.New("dedupe: key committed by a concurrent request")

// ownLast runs Do's own transaction in claim-last mode (Options.ClaimLast): look the key up,
// run fn, and insert the key with its response in one statement pipelined with COMMIT.
// A concurrent duplicate runs fn too; its insert then fails on the unique index, which
// aborts its transaction (the pipelined COMMIT cannot commit it), and it looks again,
// finding the winner's response.
func (d *Deduper) ownLast(ctx context.Context, db DB, req Request, ttlMicros int64, fn Func) (Result, error) {
	for range maxClaimRounds {
		res, err := d.ownLastRound(ctx, db, req, ttlMicros, fn)
		if !errors.Is(err, errClaimLost) {
			return res, err
		}
	}
	return Result{}, errClaimChurn
}

func (d *Deduper) ownLastRound(ctx context.Context, db DB, req Request, ttlMicros int64, fn Func) (Result, error) {
	tx, err := d.open(ctx, db)
	if err != nil {
		return Result{}, err
	}
	defer tx.close(ctx)

	fp := req.Fingerprint
	if fp == nil {
		fp = []byte{} // the column is NOT NULL; pgx sends a nil slice as NULL
	}
	var row claimRow
	sent := time.Now()
	err = d.send(ctx, &tx.claimTx, true, "", d.q.lookup, []any{req.Scope, req.Key}, func(r pgx.Row) error {
		err := r.Scan(&row.fingerprint, &row.status, &row.headers, &row.body, &row.expired, &row.lifeMicros)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		row.found = err == nil
		return err
	})
	if err != nil {
		return Result{}, err
	}
	switch {
	case row.found && !row.expired:
		resp, err := d.stored(req, &row)
		if err != nil {
			return Result{}, err
		}
		return Result{Response: *resp, Source: SourcePostgres, ExpiresAt: sent.Add(time.Duration(row.lifeMicros) * time.Microsecond)}, nil
	case row.found:
		// Expired: it goes, in this transaction, so the insert at the end can take its place.
		// If another request re-claimed it first, the insert fails and the next round replays.
		if _, err := tx.Exec(ctx, d.q.dropExpired, req.Scope, req.Key); err != nil {
			return Result{}, err
		}
	}

	resp, err := fn(ctx, tx.Tx)
	if err != nil {
		return Result{}, err
	}
	if err := d.checkAfterFn(tx.Tx, resp); err != nil {
		return Result{}, err
	}
	args, err := d.storeArgs(req, resp)
	if err != nil {
		return Result{}, err
	}
	// storeArgs: scope, key, status, headers, body.
	args = []any{args[0], args[1], fp, args[2], args[3], args[4], ttlMicros}
	b := &pgx.Batch{}
	if d.lockTimeout != "" {
		b.Queue(sqlSetLockTimeout, d.lockTimeout)
	}
	var lifeMicros int64
	sent = time.Now()
	b.Queue(d.q.insertDone, args...).QueryRow(func(r pgx.Row) error { return r.Scan(&lifeMicros) })
	if d.lockTimeout != "" {
		b.Queue(sqlRestoreLockTimeout)
	}
	if tx.pipelined() {
		b.Queue(sqlCommit)
	}
	// The insert waits here for a concurrent request holding the key: the claim's wait.
	stop := tracewait.Claim(ctx)
	err = tx.SendBatch(ctx, b).Close()
	stop()
	if err == nil && !tx.pipelined() {
		err = tx.Commit(ctx)
	}
	switch {
	case pgerr.Is(err, pgerr.UniqueViolation):
		return Result{}, errClaimLost
	case err != nil:
		return Result{}, claimErr(err)
	}
	return Result{Response: resp, ExpiresAt: sent.Add(time.Duration(lifeMicros) * time.Microsecond)}, nil
}
