package dedupe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/internal/pgerr"
	"github.com/pgonce/pgonce/internal/tracewait"
)

// queries holds the SQL for one table, formatted once by New with the sanitised identifier.
type queries struct {
	claim, reclaim, store, purge string
	// lockKey takes the key's advisory lock ahead of an insert-first claim (the table layout;
	// empty in the generations layout, whose claim function takes it).
	lockKey string
	// The lock-first claim (lockfirst.go): lock the key unless it is committed, look it up,
	// drop it when expired, insert it with its response. In the generations layout one call
	// (lockLookup) locks and looks up, and the functions deal with an expired row themselves
	// (0006's insert replaces it, 0007's lookup deletes it), so lockNew, lookup and
	// dropExpired are empty.
	lockNew, lookup, dropExpired, insertDone string
	lockLookup                               string
}

func newQueries(table string) queries {
	return queries{
		// One statement does the common cases in one round trip: it inserts the key, or, when
		// the key is already committed, returns the stored row. All sub-statements of a WITH share
		// one snapshot, so when the INSERT had to wait for a concurrent claimer that then
		// committed, the SELECT cannot see that row and the statement returns nothing; claim
		// then simply asks again with a fresh snapshot.
		claim: fmt.Sprintf(`/* pgonce:claim */ WITH claimed AS (
	INSERT INTO %[1]s AS k (scope, key, fingerprint, expires_at)
	VALUES ($1, $2, $3, now() + $4::bigint * interval '1 microsecond')
	ON CONFLICT (scope, key) DO NOTHING
	RETURNING k.expires_at
)
SELECT true, NULL::bytea, NULL::integer, NULL::jsonb, NULL::bytea, false, %[2]s FROM claimed
UNION ALL
SELECT false, k.fingerprint, k.status, k.headers, k.body, k.expires_at <= now(), %[2]s
FROM %[1]s k
WHERE k.scope = $1 AND k.key = $2 AND NOT EXISTS (SELECT FROM claimed)`, table, sqlLifeMicros),

		// Re-claims an expired key in place. The WHERE is re-checked against the newest row
		// version after any wait, so of two concurrent re-claimers exactly one gets the row.
		reclaim: fmt.Sprintf(`/* pgonce:reclaim */ UPDATE %[1]s
SET fingerprint = $3, status = NULL, headers = NULL, body = NULL, created_at = now(),
	completed_at = NULL, expires_at = now() + $4::bigint * interval '1 microsecond'
WHERE scope = $1 AND key = $2 AND expires_at <= now()
RETURNING %[2]s`, table, sqlLifeMicros),

		// headers arrives as JSON text and is cast here: in the query modes that describe no
		// statement (exec, simple_protocol: the modes for PgBouncer) pgx cannot encode a Go map
		// for a parameter of unknown type, and a []byte would be sent as bytea.
		store: fmt.Sprintf(`/* pgonce:store */ UPDATE %[1]s
SET status = $3, headers = $4::jsonb, body = $5, completed_at = now()
WHERE scope = $1 AND key = $2`, table),

		lockKey: `/* pgonce:lock_key */ SELECT ` + sqlKeyLock,

		// Takes the key's lock unless the key is committed and live: a replay never waits
		// for, or holds up, another request. It answers whether it took the lock.
		lockNew: fmt.Sprintf(`/* pgonce:lock_new */ SELECT CASE
	WHEN EXISTS (SELECT FROM %[1]s WHERE scope = $1 AND key = $2 AND expires_at > now()) THEN false
	ELSE %[2]s::text = ''
END`, table, sqlKeyLock),

		lookup: fmt.Sprintf(`/* pgonce:lookup */ SELECT k.fingerprint, k.status, k.headers, k.body, k.expires_at <= now(), %[2]s
FROM %[1]s k
WHERE k.scope = $1 AND k.key = $2`, table, sqlLifeMicros),

		dropExpired: fmt.Sprintf(`/* pgonce:drop_expired */ DELETE FROM %[1]s
WHERE scope = $1 AND key = $2 AND expires_at <= now()`, table),

		// No ON CONFLICT: a key committed meanwhile makes this fail with unique_violation,
		// which aborts the transaction, so the COMMIT pipelined after it cannot commit fn's
		// writes. headers is JSON text, as in store.
		insertDone: fmt.Sprintf(`/* pgonce:insert_done */ INSERT INTO %[1]s
	(scope, key, fingerprint, status, headers, body, completed_at, expires_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, now(), now() + $7::bigint * interval '1 microsecond')
RETURNING %[2]s`, table, sqlLifeMicros),

		// SKIP LOCKED: rows that a request is re-claiming are left alone, so a purge never
		// waits on a request and a request waits on a purge for one batch at most. Deleting by
		// ctid (the rows are locked by the subquery, so their ctids cannot change) keeps each
		// batch a TID scan; "(scope, key) IN (...)" planned as a hash join over the whole table
		// and made a full purge quadratic (measured: 200k rows 2.4s -> 0.47s).
		purge: fmt.Sprintf(`/* pgonce:purge */ DELETE FROM %[1]s
WHERE ctid = ANY(ARRAY(
	SELECT ctid FROM %[1]s
	WHERE expires_at <= now()
	ORDER BY expires_at
	LIMIT $1
	FOR UPDATE SKIP LOCKED
))`, table),
	}
}

// sqlKeyLock takes the transaction-scoped advisory lock of the key ($1 scope, $2 key): the
// same lock as the generations layout's claim function (migration 0004), in the two-integer
// space, which the single-bigint locks of package pessimistic never meet. Every claim on a
// key takes it before writing the key, so a duplicate waits here, whichever path it takes; a
// hash collision between two keys only makes one wait for the other.
const sqlKeyLock = `pg_advisory_xact_lock(1886351214, hashtext($1::text || E'\n' || $2::text))`

// sqlLifeMicros is the key row's remaining lifetime in microseconds, by the server's clock at
// the moment the statement runs; claim turns it into Result.ExpiresAt on this process's clock.
const sqlLifeMicros = "(extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint"

// Statements pipelined around a claim. The lock_timeout in force before the claim is kept in
// a transaction-local custom setting and put back after it, so a bounded wait for the key
// never shortens the lock waits of the caller's own statements.
const (
	sqlSavepoint        = "/* pgonce:savepoint */ SAVEPOINT pgonce_dedupe"
	sqlReleaseSavepoint = "/* pgonce:release_savepoint */ RELEASE SAVEPOINT pgonce_dedupe"
	// sqlUndoSavepoint goes as one simple-protocol query (Exec without arguments): in an
	// aborted transaction PostgreSQL refuses to even parse RELEASE, so a pipelined batch, whose
	// statements pgx prepares first on a fresh connection, could not undo it.
	sqlUndoSavepoint      = "/* pgonce:undo_savepoint */ ROLLBACK TO SAVEPOINT pgonce_dedupe; RELEASE SAVEPOINT pgonce_dedupe"
	sqlSetLockTimeout     = "/* pgonce:set_lock_timeout */ SELECT set_config('pgonce.saved_lock_timeout', current_setting('lock_timeout'), true), set_config('lock_timeout', $1, true)"
	sqlRestoreLockTimeout = "/* pgonce:restore_lock_timeout */ SELECT set_config('lock_timeout', current_setting('pgonce.saved_lock_timeout'), true)"
	sqlCommit             = "/* pgonce:commit */ COMMIT"
)

// maxClaimRounds bounds how often claim looks again after losing a race (a conflicting claim
// committed after its snapshot, or another request re-claimed an expired key first). Each
// round waits for the competing transaction, so running out takes sustained churn on one key.
const maxClaimRounds = 16

var errClaimChurn = errors.New("dedupe: key changed hands too often while claiming")

// claimRow is one row of the claim statement.
type claimRow struct {
	found       bool // the statement returned a row
	inserted    bool
	fingerprint []byte
	status      *int32
	headers     []byte
	body        []byte
	expired     bool
	lifeMicros  int64
}

// claimTx is where claim sends its statements.
type claimTx struct {
	// Tx is the transaction the claim runs in. When it is nil, the first claim round begins
	// it on conn with txOptions, in the same round trip (pgx's Batch.BeginTx), and sets it.
	pgx.Tx
	conn      *pgx.Conn
	txOptions pgx.TxOptions
	// savepoint opens Do's savepoint in Tx in the same round trip as the first claim.
	savepoint bool
}

// claim makes tx the owner of (scope, key), or returns the response stored by the committed
// earlier request with that key. A nil response and nil error mean tx owns the key. The first
// claim statement travels in one round trip with BEGIN or the savepoint, as tx asks.
//
// expiresAt is when the key row expires, on this process's clock: the row's remaining
// lifetime by the server's clock, added to the time the statement was sent, so it is never
// later than the true expiry whatever the two clocks say.
func (d *Deduper) claim(ctx context.Context, tx *claimTx, req Request, ttlMicros int64) (stored *Response, expiresAt time.Time, err error) {
	defer tracewait.Claim(ctx)() // the claim's wall time, for tracers (TraceDoEndData.Wait)
	fp := fingerprintArg(req)
	for round := 0; round < maxClaimRounds; round++ {
		var row claimRow
		sent := time.Now()
		err := d.round(ctx, tx, round == 0, d.q.claim, []any{req.Scope, req.Key, fp, ttlMicros}, func(r pgx.Row) error {
			err := r.Scan(&row.inserted, &row.fingerprint, &row.status, &row.headers, &row.body, &row.expired, &row.lifeMicros)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			row.found = err == nil
			return err
		})
		if err != nil {
			return nil, time.Time{}, claimErr(err)
		}
		expiresAt = sent.Add(time.Duration(row.lifeMicros) * time.Microsecond)
		switch {
		case row.inserted:
			return nil, expiresAt, nil
		case !row.found:
			// The key committed after this statement's snapshot; look again.
			continue
		case row.expired:
			won := false
			sent := time.Now()
			err := d.round(ctx, tx, false, d.q.reclaim, []any{req.Scope, req.Key, fp, ttlMicros}, func(r pgx.Row) error {
				err := r.Scan(&row.lifeMicros)
				if errors.Is(err, pgx.ErrNoRows) {
					return nil
				}
				won = err == nil
				return err
			})
			if err != nil {
				return nil, time.Time{}, claimErr(err)
			}
			if won {
				return nil, sent.Add(time.Duration(row.lifeMicros) * time.Microsecond), nil
			}
			// Someone else re-claimed or purged it first; look again.
			continue
		}
		resp, err := d.stored(req, &row)
		return resp, expiresAt, err
	}
	return nil, time.Time{}, errClaimChurn
}

// fingerprintArg is req's fingerprint as the key statements take it: never nil, since the
// column is NOT NULL and pgx sends a nil slice as NULL.
func fingerprintArg(req Request) []byte {
	if req.Fingerprint == nil {
		return []byte{}
	}
	return req.Fingerprint
}

// stored returns the response of a committed key row, or why it cannot be replayed to req.
func (d *Deduper) stored(req Request, row *claimRow) (*Response, error) {
	switch {
	case !bytes.Equal(row.fingerprint, req.Fingerprint):
		return nil, ErrFingerprintMismatch
	case row.status == nil:
		return nil, ErrIncomplete
	}
	resp := &Response{Status: int(*row.status), Body: row.body}
	if d.opts.BodyCodec != nil {
		var err error
		if resp.Body, err = d.opts.BodyCodec.Open(req.Scope, req.Key, row.body); err != nil {
			return nil, fmt.Errorf("%w: open: %w", ErrBodyCodec, err)
		}
	}
	if row.headers != nil {
		if err := json.Unmarshal(row.headers, &resp.Header); err != nil {
			return nil, fmt.Errorf("dedupe: decode stored headers: %w", err)
		}
	}
	return resp, nil
}

// round runs one claim statement, pipelining around it in the same round trip, on the first
// round, BEGIN or the savepoint and the key's lock, and, in bounded-wait mode, the
// lock_timeout change and its restoration.
func (d *Deduper) round(ctx context.Context, tx *claimTx, first bool, sql string, args []any, scan func(pgx.Row) error) error {
	if !first || d.q.lockKey == "" {
		return d.send(ctx, tx, first, d.lockTimeout, sql, args, scan)
	}
	// The table layout: the key's lock first, in the same round trip, so that a lock-first
	// claim of the same key (lockfirst.go) waits for this one. lock_timeout bounds both waits.
	b := tx.batch(true)
	if d.lockTimeout != "" {
		b.Queue(sqlSetLockTimeout, d.lockTimeout)
	}
	b.Queue(d.q.lockKey, args[0], args[1])
	b.Queue(sql, args...).QueryRow(scan)
	if d.lockTimeout != "" {
		b.Queue(sqlRestoreLockTimeout)
	}
	return tx.send(ctx, b)
}

// send runs one statement in tx, with BEGIN or the savepoint first when first is set, and
// lock_timeout set to lockTimeout around it unless that is empty, in one round trip.
func (d *Deduper) send(ctx context.Context, tx *claimTx, first bool, lockTimeout, sql string, args []any, scan func(pgx.Row) error) error {
	if !(first && (tx.Tx == nil || tx.savepoint)) && lockTimeout == "" {
		return scan(tx.QueryRow(ctx, sql, args...))
	}
	b := tx.batch(first)
	queueWaiting(b, lockTimeout, sql, args...).QueryRow(scan)
	return tx.send(ctx, b)
}

// batch returns a batch for tx's next round trip, holding BEGIN (when tx is not begun yet) or
// the savepoint (when tx asks for one) if first is set.
func (tx *claimTx) batch(first bool) *pgx.Batch {
	b := &pgx.Batch{}
	if first && tx.Tx == nil {
		b.BeginTx(tx.txOptions)
	}
	if first && tx.savepoint {
		b.Queue(sqlSavepoint)
	}
	return b
}

// send sends b, made by batch, in one round trip. When b begins the transaction, tx holds
// it afterwards, even when a later statement failed (it is then aborted and the caller rolls
// it back); when BEGIN itself failed, it is already closed.
func (tx *claimTx) send(ctx context.Context, b *pgx.Batch) error {
	if tx.Tx != nil {
		return tx.SendBatch(ctx, b).Close()
	}
	br := tx.conn.SendBatch(ctx, b)
	tx.Tx = br.Tx()
	return br.Close()
}

// queueWaiting queues sql, with lock_timeout set to lockTimeout around it unless that is
// empty, and returns its queued query.
func queueWaiting(b *pgx.Batch, lockTimeout, sql string, args ...any) *pgx.QueuedQuery {
	if lockTimeout != "" {
		b.Queue(sqlSetLockTimeout, lockTimeout)
	}
	q := b.Queue(sql, args...)
	if lockTimeout != "" {
		b.Queue(sqlRestoreLockTimeout)
	}
	return q
}

// claimErr maps a lock wait that ran out into ErrInProgress, keeping the PostgreSQL error in
// the chain for callers that want the detail.
func claimErr(err error) error {
	if pgerr.Is(err, pgerr.LockNotAvailable) {
		return fmt.Errorf("%w: %w", ErrInProgress, err)
	}
	return err
}

func lockTimeoutSetting(ms int64) string {
	return strconv.FormatInt(max(ms, 1), 10) + "ms"
}
