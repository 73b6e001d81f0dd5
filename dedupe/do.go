package dedupe

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgonce/pgonce/internal/inputerr"
	"github.com/pgonce/pgonce/internal/pgerr"
	"github.com/pgonce/pgonce/internal/retry"
)

// DB is the database handle Do runs on, satisfied by *pgxpool.Pool, *pgx.Conn and pgx.Tx.
// Given a pool or a connection, Do opens, commits and retries its own transaction; given a
// pgx.Tx, Do joins it (see Deduper.Do).
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Execer is what Purge needs; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Func is the business write guarded by a key. It runs inside tx, must do all its database
// work through tx, and must leave tx open: Do commits or rolls back. In a transaction Do
// opened, tx.Commit is refused with ErrTxEnded (sending nothing), since the key is written at
// the commit.
//
// Returning an error rolls everything back, frees the key, and makes Do return that error
// (wrapped in a *KeyError). Returning a Response commits it with the effect, whatever its
// Status: a business refusal (say 409) is stored and replayed like a success.
//
// Func may run more than once for one request: when PostgreSQL reports a serialization
// failure or a deadlock, Do rolls the whole attempt back and runs it again in a new
// transaction. Only the attempt whose transaction commits has effects in the database, so
// Func should not cause effects outside the database (send mail, call APIs) before Do returns.
type Func func(ctx context.Context, tx pgx.Tx) (Response, error)

// Options configures a Deduper. The zero value (or a nil *Options) gives the defaults noted on
// each field; a non-positive number means its default.
type Options struct {
	// Schema is the schema of the dedupe table (dedupe_keys, as the migrations create it:
	// migrations.Config.Schema); default "", the table is found through search_path. The
	// table's name is not configurable: the migrations create only this one.
	Schema string

	// TTL is how long a committed key is remembered when the request does not say; default
	// 24h. After it the key counts as new: the next request with it runs again.
	TTL time.Duration

	// LockWait bounds how long a request waits for a concurrent request with the same key
	// to finish. Zero waits as long as ctx allows (then the duplicate replays the first one's
	// response, or claims the key itself if the first rolled back). When positive, a wait
	// longer than this ends with ErrInProgress. Implemented with SET LOCAL lock_timeout around
	// the key's lock and its claim only, at no extra round trip; millisecond resolution.
	LockWait time.Duration

	// MaxAttempts bounds how many times Do runs a request's transaction when PostgreSQL
	// reports a serialization failure (40001) or deadlock (40P01); default 5. Set 1 to never
	// retry. Attempts are spaced by jittered exponential backoff between RetryBaseDelay
	// (default 5ms) and RetryMaxDelay (default 500ms).
	MaxAttempts    int
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration

	// MaxResponseBytes bounds the stored response (body plus header names and values);
	// default 1 MiB. A larger response fails with ErrResponseTooLarge and rolls back.
	MaxResponseBytes int

	// BodyCodec, when set, transforms stored response bodies (see NewAESGCM). Responses
	// returned to the caller are always the plain bodies.
	BodyCodec BodyCodec

	// TxOptions are used for the transactions Do opens (isolation level, access mode).
	// The default is the server's default, normally READ COMMITTED. READ COMMITTED, named or
	// left to the server, gets the lock-first claim; REPEATABLE READ and SERIALIZABLE the
	// insert-first one (see Do).
	TxOptions pgx.TxOptions

	// Tracer, when set, is told when each Do begins and ends (see Tracer); nil costs nothing.
	Tracer Tracer
	// TraceKeys puts the idempotency key itself in TraceDoStartData.Key; by default tracers
	// get only KeyHash.
	TraceKeys bool

	// Layout chooses the tables that hold the keys; default LayoutTable (dedupe_keys).
	// LayoutGenerations removes expired keys by truncating whole generations (see Layout).
	Layout Layout
}

// Defaults of Options.
const (
	DefaultTTL              = 24 * time.Hour
	DefaultMaxAttempts      = retry.DefaultMaxAttempts
	DefaultRetryBaseDelay   = retry.DefaultBaseDelay
	DefaultRetryMaxDelay    = retry.DefaultMaxDelay
	DefaultMaxResponseBytes = 1 << 20
	DefaultTable            = "dedupe_keys" // the dedupe table's name (not configurable; see Options.Schema)
)

// Deduper runs functions at most once per (scope, key). It holds no connections and is safe
// for concurrent use; create one per table and share it.
type Deduper struct {
	opts        Options
	retry       retry.Policy
	q           queries
	lockTimeout string       // lock_timeout value for bounded waits, "" when waiting is unbounded
	gen         *generations // LayoutGenerations only (layout.go)
}

// New returns a Deduper with the given options (nil means defaults). It returns no error, unlike
// the constructors of the other packages, because no Options value is invalid: a non-positive
// number means its default, and Schema is quoted as an identifier, whatever it holds.
func New(opts *Options) *Deduper {
	var o Options
	if opts != nil {
		o = *opts
	}
	table := pgx.Identifier{DefaultTable}
	if o.Schema != "" {
		table = pgx.Identifier{o.Schema, DefaultTable}
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	p := retry.Policy{MaxAttempts: o.MaxAttempts, BaseDelay: o.RetryBaseDelay, MaxDelay: o.RetryMaxDelay}.WithDefaults(retry.Default)
	o.MaxAttempts, o.RetryBaseDelay, o.RetryMaxDelay = p.MaxAttempts, p.BaseDelay, p.MaxDelay
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	d := &Deduper{opts: o, retry: p, q: newQueries(table.Sanitize())}
	if o.Layout == LayoutGenerations {
		d.q, d.gen = generationQueries(o.Schema)
	}
	if o.LockWait > 0 {
		d.lockTimeout = lockTimeoutSetting(o.LockWait.Milliseconds())
	}
	return d
}

// BodyCodec returns Options.BodyCodec (nil when none), so that a cache in front of the
// Deduper (the Redis guard) seals the bodies it keeps the same way.
func (d *Deduper) BodyCodec() BodyCodec { return d.opts.BodyCodec }

// MaxResponseBytes reports the limit on a stored response (Options.MaxResponseBytes, or its
// default), so that a middleware in front can refuse a larger response before Do does.
func (d *Deduper) MaxResponseBytes() int { return d.opts.MaxResponseBytes }

// Do runs fn at most once for req's (scope, key) and returns its response, or, for a key
// already committed, the stored response without running fn.
//
// Do writes the key into the dedupe table in the same transaction as fn's writes, together
// with fn's response, so the key and the effect commit together or not at all. Outcomes:
//
//   - new key: fn runs; its response is committed with the key (Result.Replayed() false);
//   - committed key, same fingerprint: the stored response (Result.Replayed() true), fn not run;
//   - committed key, other fingerprint: ErrFingerprintMismatch, fn not run;
//   - key held by a transaction still running: Do waits on the key's lock until that
//     transaction ends, then replays its response, or claims the key if it rolled back. With
//     Options.LockWait set, a longer wait ends with ErrInProgress;
//   - fn returns an error: everything is rolled back, the key stays free, the error comes
//     back in a *KeyError (errors.Is and errors.As see through it);
//   - serialization failure or deadlock: the attempt is rolled back and rerun, up to
//     Options.MaxAttempts;
//   - expired key: counts as new; it is replaced in the same transaction, atomically.
//
// The key's lock is a transaction-scoped advisory lock on a hash of (scope, key), taken
// before the key is written (see Options.LockWait). How the key is written depends on the
// transaction:
//
//   - Do's own transaction, READ COMMITTED (the default): lock-first. BEGIN, the lock
//     (skipped when the key is committed) and a lookup of the key go in one pipelined batch
//     (pgx's Batch.BeginTx); then fn's statements; then the key, inserted with its response,
//     and COMMIT in one batch. The key row is written once.
//   - otherwise (a joined transaction, REPEATABLE READ or SERIALIZABLE): insert-first. The
//     lock and the key's insert go with BEGIN or the savepoint; the response is stored in the
//     key row before COMMIT.
//
// Given a *pgxpool.Pool (or any handle with its Acquire method) or a *pgx.Conn, Do runs its
// own transaction, with retries. A new key then costs exactly the round trips of fn's
// statements in a plain transaction: a one-statement fn makes 3 round trips, as
// pgx.BeginFunc would. A replay costs 2: BEGIN with the lookup, and ROLLBACK. The
// transaction fn gets is pgx's own, so all of pgx.Tx works in it (LargeObjects, nested
// Begin), except Commit (see Func). Any other DB gets its own transaction too, through
// Begin, with BEGIN and COMMIT as round trips of their own.
//
// Given a pgx.Tx, Do joins it: the key commits or rolls back with the caller's transaction.
// (One entry point rather than River's Insert/InsertTx pair: the HTTP middleware and the Redis
// guard pass on whatever handle their caller gave them, through one Runner method; a pgx.Tx
// cannot be mistaken for a pool, since joining is the only correct thing to do with it.)
// Do wraps its part in a savepoint, so when fn fails or the key is refused, the caller's
// transaction is left as it was and stays usable. Do does not retry in a joined transaction
// (only the caller can rerun it); serialization failures and deadlocks come back as errors.
//
// Do checks its input before any SQL runs and returns an error wrapping ErrNilDB, ErrNilFunc,
// ErrInvalidScope, ErrInvalidKey, ErrInvalidFingerprint or ErrInvalidTTL, or ctx.Err().
func (d *Deduper) Do(ctx context.Context, db DB, req Request, fn Func) (res Result, err error) {
	if d.opts.Tracer != nil {
		var t *doTrace
		ctx, t = d.traceStart(ctx, req)
		defer t.end(ctx, &res, &err)
	}
	if err := checkCall(ctx, db, fn, req); err != nil {
		return Result{}, err
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = d.opts.TTL
	}
	// Round up so that a sub-microsecond TTL still expires after creation (CHECK constraint).
	ttlMicros := int64((ttl + time.Microsecond - 1) / time.Microsecond)

	if tx, ok := db.(pgx.Tx); ok {
		res, err := d.joined(ctx, tx, req, ttlMicros, fn)
		res.Attempts = 1
		if err != nil {
			return res, d.fail(ctx, req, 1, err)
		}
		return res, nil
	}
	r, err := retry.Do(ctx, d.retry, func(attempt int) error {
		var err error
		res, err = d.own(ctx, db, req, ttlMicros, fn)
		return err
	}, pgerr.Retryable)
	res.Attempts = r.Attempts
	switch {
	case err == nil:
		return res, nil
	case r.Outcome == retry.Cancelled:
		return res, d.fail(ctx, req, r.Attempts, errors.Join(r.CtxErr, err))
	}
	return res, d.fail(ctx, req, r.Attempts, err)
}

func (d *Deduper) fail(ctx context.Context, req Request, attempts int, err error) error {
	// A cancelled statement surfaces as a driver error; make sure the caller can still
	// recognise the cancellation with errors.Is(err, context.Canceled).
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = errors.Join(cerr, err)
	}
	return &KeyError{Scope: req.Scope, Key: req.Key, Attempts: attempts, Err: err}
}

func checkCall(ctx context.Context, db DB, fn Func, req Request) error {
	if inputerr.IsNil(db) {
		return ErrNilDB
	}
	if fn == nil {
		return ErrNilFunc
	}
	if err := req.Validate(); err != nil {
		return err
	}
	return ctx.Err()
}

// cleanupTimeout bounds a rollback issued after the caller's context was cancelled.
const cleanupTimeout = 5 * time.Second

// rollback ends tx even when ctx is already cancelled, so the connection can be reused.
func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = tx.Rollback(ctx)
}
