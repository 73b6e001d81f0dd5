package dedupe

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// acquirer is what Do needs of a pool to own a connection for the pipelined BEGIN and COMMIT:
// *pgxpool.Pool has it, and so can a wrapper of one (instrumentation, a read/write router),
// which then keeps both instead of silently losing them.
type acquirer interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

// ownTx is a transaction Do opens itself.
//
// When Do owns a connection outright (acquired from a pool, or a *pgx.Conn it was given),
// BEGIN travels in the same batch as the claim (pgx's Batch.BeginTx) and COMMIT in the same
// batch as the stored response, so a new key costs exactly the round trips of fn's statements
// in a plain transaction. The transaction is pgx's own (Batch.BeginTx hands it over), so
// everything a pgx.Tx offers works in fn, LargeObjects and nested Begin included.
type ownTx struct {
	claimTx
	// pooled is the pooled connection to hand back; nil when Do did not acquire one.
	pooled *pgxpool.Conn
	// fn is what fn gets: Tx, with Commit refused (fnTx).
	fn fnTx
}

// fnTx is the transaction fn gets in a transaction Do opened: pgx's own, with every method of
// it (LargeObjects, nested Begin) except Commit, which it refuses, sending nothing: the key is
// written at the commit, so a commit inside fn would commit fn's writes without it.
type fnTx struct {
	pgx.Tx
	rolledBack bool // fn called Rollback: its writes are gone, so no key is needed
}

// Commit refuses to commit Do's transaction. fn returns its response instead, and Do commits.
func (t *fnTx) Commit(context.Context) error {
	return fmt.Errorf("%w: fn called Commit; Do commits the transaction after fn returns", ErrTxEnded)
}

// Rollback rolls the transaction back; Do then reports ErrTxEnded.
func (t *fnTx) Rollback(ctx context.Context) error {
	t.rolledBack = true
	return t.Tx.Rollback(ctx)
}

// runFn runs fn in tx and checks what it left, as checkAfterFn does. When fn ended the
// transaction without Rollback (a COMMIT sent as SQL), its writes may have committed without
// the key; the key is then committed without a response, in a transaction of its own, so
// that retries get ErrIncomplete rather than run again.
func (d *Deduper) runFn(ctx context.Context, tx *ownTx, req Request, ttlMicros int64, fn Func) (Response, error) {
	tx.fn = fnTx{Tx: tx.Tx}
	resp, err := fn(ctx, &tx.fn)
	if err == nil {
		err = d.checkAfterFn(tx.Tx, resp)
	}
	if c := tx.Conn(); errors.Is(err, ErrTxEnded) && !tx.fn.rolledBack && c != nil && c.PgConn().TxStatus() == 'I' {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_, _ = c.Exec(ctx, d.q.claim, req.Scope, req.Key, fingerprintArg(req), ttlMicros)
	}
	return resp, err
}

// pipelined reports whether Do owns the connection outright, so that COMMIT can travel in
// the same batch as the response: no pgx.Tx bookkeeping needs a separate Commit call.
func (t *ownTx) pipelined() bool { return t.conn != nil }

// open gets what the attempt's transaction runs on. With a connection of its own, Do only
// acquires it here: the first claim round begins the transaction. Any other DB begins it now,
// in a round trip of its own.
func (d *Deduper) open(ctx context.Context, db DB) (*ownTx, error) {
	switch h := db.(type) {
	case acquirer: // *pgxpool.Pool, or a wrapper that hands out its pool's connections
		c, err := h.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		return &ownTx{claimTx: claimTx{conn: c.Conn(), txOptions: d.opts.TxOptions}, pooled: c}, nil
	case *pgx.Conn:
		return &ownTx{claimTx: claimTx{conn: h, txOptions: d.opts.TxOptions}}, nil
	case interface {
		BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
	}:
		tx, err := h.BeginTx(ctx, d.opts.TxOptions)
		if err != nil {
			return nil, err
		}
		return &ownTx{claimTx: claimTx{Tx: tx}}, nil
	default:
		tx, err := db.Begin(ctx)
		if err != nil {
			return nil, err
		}
		return &ownTx{claimTx: claimTx{Tx: tx}}, nil
	}
}

// close ends the transaction if it is still open and returns the connection.
func (t *ownTx) close(ctx context.Context) {
	// A pipelined COMMIT leaves pgx's Tx unaware that it ended; the connection's status says.
	if t.Tx != nil && (!t.pipelined() || t.conn.PgConn().TxStatus() != 'I') {
		rollback(ctx, t.Tx)
	}
	if t.pooled != nil {
		t.pooled.Release()
	}
}

// own runs one attempt in a transaction Do opens.
func (d *Deduper) own(ctx context.Context, db DB, req Request, ttlMicros int64, fn Func) (Result, error) {
	if d.lockFirst() {
		return d.ownLockFirst(ctx, db, req, ttlMicros, fn)
	}
	// Insert-first: isolation levels above READ COMMITTED.
	tx, err := d.open(ctx, db)
	if err != nil {
		return Result{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	// Runs on every return and on a panic in fn: the transaction never outlives Do and the
	// pooled connection always goes back.
	defer tx.close(ctx)

	stored, expiresAt, err := d.claim(ctx, &tx.claimTx, req, ttlMicros)
	if err != nil {
		return Result{}, err
	}
	if stored != nil {
		return Result{Response: *stored, Source: SourcePostgres, ExpiresAt: expiresAt}, nil
	}
	resp, err := d.runFn(ctx, tx, req, ttlMicros, fn)
	if err != nil {
		return Result{}, err
	}
	if !tx.pipelined() {
		args, err := d.storeArgs(req, resp)
		if err != nil {
			return Result{}, err
		}
		if _, err := tx.Exec(ctx, d.q.store, args...); err != nil {
			return Result{}, err
		}
		return Result{Response: resp, ExpiresAt: expiresAt}, tx.Commit(ctx)
	}
	b := &pgx.Batch{}
	if err := d.queueStore(b, req, resp); err != nil {
		return Result{}, err
	}
	b.Queue(sqlCommit)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return Result{}, err
	}
	return Result{Response: resp, ExpiresAt: expiresAt}, nil
}
