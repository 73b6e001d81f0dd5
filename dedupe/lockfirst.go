package dedupe

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgonce/pgonce/internal/pgerr"
	"github.com/pgonce/pgonce/internal/tracewait"
)

// errClaimLost: the key changed between the lock-first claim's statements (a key that was
// committed expired or was purged in between), or a claim that took no lock committed the key
// while fn ran. This attempt rolls back, and the next round looks again.
var errClaimLost = errors.New("dedupe: key committed by a concurrent request")

// lockFirst reports whether Do's own transactions claim lock-first (ownLockFirst): in READ
// COMMITTED (named, or the server's default, which is normally it), in either layout. Under
// REPEATABLE READ or SERIALIZABLE the lookup after the lock wait would still see the snapshot
// from before it, so they claim insert-first, as joined transactions always do.
func (d *Deduper) lockFirst() bool {
	switch d.opts.TxOptions.IsoLevel {
	case "", pgx.ReadCommitted:
		return true
	}
	return false
}

// ownLockFirst runs Do's own transaction with the key written once, at the end:
//
//  1. with BEGIN, in one round trip: take the key's advisory lock unless the key is committed
//     and live, then look it up (a new statement, so a fresh snapshot that sees what committed
//     while the lock was awaited);
//  2. fn's statements;
//  3. the key inserted together with its response, pipelined with COMMIT.
//
// A concurrent duplicate waits on the lock, not on the key's index entry, and then replays.
// The key row is inserted once instead of inserted and then updated: measured, one statement
// and its WAL record less per new key, for an advisory lock, which writes nothing. Insert-first
// claims take the same lock first (claim.round), so the two kinds wait for each other.
func (d *Deduper) ownLockFirst(ctx context.Context, db DB, req Request, ttlMicros int64, fn Func) (Result, error) {
	for range maxClaimRounds {
		res, err := d.lockFirstRound(ctx, db, req, ttlMicros, fn)
		if !errors.Is(err, errClaimLost) {
			return res, err
		}
	}
	return Result{}, errClaimChurn
}

func (d *Deduper) lockFirstRound(ctx context.Context, db DB, req Request, ttlMicros int64, fn Func) (Result, error) {
	tx, err := d.open(ctx, db)
	if err != nil {
		return Result{}, err
	}
	defer tx.close(ctx)

	var (
		locked bool
		row    claimRow
	)
	key := []any{req.Scope, req.Key} // the statements' arguments, boxed once
	b := tx.batch(true)
	if d.q.lockLookup != "" {
		// The generations layout: one call locks and looks up in both live generations.
		queueWaiting(b, d.lockTimeout, d.q.lockLookup, key[0], key[1], ttlMicros).QueryRow(func(r pgx.Row) error {
			return r.Scan(&locked, &row.found, &row.fingerprint, &row.status, &row.headers, &row.body, &row.expired, &row.lifeMicros)
		})
	} else {
		queueWaiting(b, d.lockTimeout, d.q.lockNew, key...).QueryRow(func(r pgx.Row) error { return r.Scan(&locked) })
		b.Queue(d.q.lookup, key...).QueryRow(func(r pgx.Row) error {
			err := r.Scan(&row.fingerprint, &row.status, &row.headers, &row.body, &row.expired, &row.lifeMicros)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			row.found = err == nil
			return err
		})
	}
	sent := time.Now()
	stop := tracewait.Claim(ctx) // the lock is where a duplicate waits: the claim's wait
	err = tx.send(ctx, b)
	stop()
	if err != nil {
		return Result{}, claimErr(err)
	}
	switch {
	case row.found && !row.expired:
		resp, err := d.stored(req, &row)
		if err != nil {
			return Result{}, err
		}
		return Result{Response: *resp, Source: SourcePostgres, ExpiresAt: sent.Add(time.Duration(row.lifeMicros) * time.Microsecond)}, nil
	case !locked:
		// The key was committed and live when the lock was skipped, and is expired or gone
		// now: look again, taking the lock this time.
		return Result{}, errClaimLost
	case row.found && d.q.dropExpired != "":
		// Expired: it goes, in this transaction, so the insert at the end takes its place.
		// (The generations layout's functions deal with an expired row themselves: 0006's
		// insert replaces it, 0007's lookup deletes it.)
		if _, err := tx.Exec(ctx, d.q.dropExpired, key...); err != nil {
			return Result{}, err
		}
	}

	resp, err := d.runFn(ctx, tx, req, ttlMicros, fn)
	if err != nil {
		return Result{}, err
	}
	headers, body, err := d.responseArgs(req, resp)
	if err != nil {
		return Result{}, err
	}
	args := append(key[:2:2], fingerprintArg(req), int32(resp.Status), headers, body, ttlMicros)
	b = &pgx.Batch{}
	var lifeMicros int64
	// The insert waits only for a claim that took no lock (a pgonce release before this one,
	// during a rolling upgrade); lock_timeout bounds that wait too.
	queueWaiting(b, d.lockTimeout, d.q.insertDone, args...).QueryRow(func(r pgx.Row) error { return r.Scan(&lifeMicros) })
	if tx.pipelined() {
		b.Queue(sqlCommit)
	}
	sent = time.Now()
	err = tx.SendBatch(ctx, b).Close()
	if err == nil && !tx.pipelined() {
		err = tx.Commit(ctx)
	}
	switch {
	case keyConflict(err):
		// The key committed meanwhile: fn's writes rolled back with the insert (the pipelined
		// COMMIT cannot commit an aborted transaction), and the next round replays it.
		return Result{}, errClaimLost
	case err != nil:
		return Result{}, claimErr(err)
	}
	return Result{Response: resp, ExpiresAt: sent.Add(time.Duration(lifeMicros) * time.Microsecond)}, nil
}

// keyConflict reports whether err is the key's insert meeting a committed key: a
// unique_violation on the primary key of dedupe_keys or of a generation table. Any other one
// (a deferred unique constraint of fn's tables, checked at COMMIT) is fn's error, not a reason
// to run fn again.
func keyConflict(err error) bool {
	if err == nil {
		return false // the common case, before pe is declared: errors.As moves it to the heap
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgerr.UniqueViolation &&
		strings.HasPrefix(pe.ConstraintName, "dedupe_keys") && strings.HasSuffix(pe.ConstraintName, "_pkey")
}
