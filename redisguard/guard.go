package redisguard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
)

// FailurePolicy says what Guard.Do does when Redis fails or is too slow.
type FailurePolicy int

const (
	// FailOpen (the default) reports the failure to OnError and runs the request on
	// PostgreSQL alone, which still refuses duplicates through its unique index.
	FailOpen FailurePolicy = iota
	// FailClosed refuses the request with an error wrapping ErrUnavailable. Choose it to
	// shed load from PostgreSQL while Redis is down, at the price of availability.
	FailClosed
)

// GuardOptions configures a Guard. The zero value (or a nil *GuardOptions) gives the defaults
// noted on each field; a non-positive number means its default.
type GuardOptions struct {
	// Prefix starts every guard key; default DefaultPrefix. Keys are Prefix + "guard:" + a
	// hash of (scope, key).
	Prefix string

	// Timeout bounds each Redis call of the guard; default 100ms. A call that fails or takes
	// longer counts as Redis being unavailable (see Policy). While Redis is down, each
	// request pays up to one Timeout before failing open (go-redis keeps redialling until the
	// deadline). Applied through the context: create the client with ContextTimeoutEnabled:
	// true (see Client), or a hung Redis holds each request for the client's ReadTimeout.
	Timeout time.Duration

	// InFlightTTL is how long the mark of a first sighting lives while its request runs;
	// default 30s. Duplicates arriving meanwhile get dedupe.ErrInProgress. If the request outlives
	// it, or its process dies, the mark expires and later duplicates go to PostgreSQL, which
	// waits for or replays the first; so this bounds how long a crashed request blocks
	// retries, not correctness.
	InFlightTTL time.Duration

	// CacheTTL is how long a committed response is kept; default 1h, and never longer than
	// the request's TTL (dedupe.Request.TTL) counted from the first sighting, so Redis forgets
	// a key no later than PostgreSQL does. When requests rely on the Deduper's own TTL
	// (Request.TTL zero), keep CacheTTL at or below it (dedupe.Options.TTL, default 24h).
	CacheTTL time.Duration

	// MaxCachedBytes bounds a cached entry (body, header names and values, fingerprint);
	// default 64 KiB. A larger response is recorded as committed without its body: its
	// duplicates are not turned away as in progress, and get the response from PostgreSQL.
	MaxCachedBytes int

	// Policy is the behaviour of Do when Redis fails; default FailOpen.
	Policy FailurePolicy

	// BodyCodec seals the bodies the guard caches in Redis, bound to scope and key, and opens
	// them on a replay (see dedupe.BodyCodec). Nil means: Do uses the codec of its Runner
	// when the Runner reports one (a *dedupe.Deduper does, and so does what Wrap returns),
	// else bodies are cached as they are. So with a codec in dedupe.Options, Redis never
	// holds a body in plain text. Set it for Check and Commit used by hand. A cached body
	// that does not open is not replayed: the request asks PostgreSQL.
	BodyCodec dedupe.BodyCodec

	// OnError is called for every Redis failure that Do tolerates (with FailOpen, a failed
	// check; with either policy, a failed commit or release, which never changes the
	// request's result), for logging and metrics. op is "check", "commit" or "release".
	// Nil logs each failure with slog.Default at level Warn.
	OnError func(ctx context.Context, op string, err error)

	// Tracer, when set, is told when each Do begins and ends (component "redisguard"; a
	// replay from Redis has Source dedupe.SourceRedis); nil costs nothing.
	Tracer dedupe.Tracer
	// TraceKeys puts the idempotency key itself in the tracer's start data; by default
	// tracers get only its hash.
	TraceKeys bool
}

// Defaults of GuardOptions.
const (
	DefaultPrefix         = "redisguard:"
	DefaultGuardTimeout   = 100 * time.Millisecond
	DefaultInFlightTTL    = 30 * time.Second
	DefaultCacheTTL       = time.Hour
	DefaultMaxCachedBytes = 64 << 10
)

// Guard is the advisory front of the dedupe core: it notices duplicates in Redis, in one round
// trip, before they reach PostgreSQL, and replays committed responses from Redis. It never
// decides alone that a request is new: a first sighting still runs through the dedupe core,
// whose unique index refuses a duplicate that Redis forgot (failover, restart, eviction,
// FLUSHALL). Safe for concurrent use.
type Guard struct {
	client Client
	opts   GuardOptions
	// inFlightMillis is InFlightTTL in milliseconds, boxed once: the check's script argument.
	inFlightMillis any
}

// NewGuard returns a Guard using client (nil opts means defaults), or an error wrapping
// ErrInvalid for a nil client or a Policy it does not know. A non-positive number in opts
// means its default. It makes no round trip.
func NewGuard(client Client, opts *GuardOptions) (*Guard, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalid)
	}
	var o GuardOptions
	if opts != nil {
		o = *opts
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultGuardTimeout
	}
	if o.InFlightTTL <= 0 {
		o.InFlightTTL = DefaultInFlightTTL
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.MaxCachedBytes <= 0 {
		o.MaxCachedBytes = DefaultMaxCachedBytes
	}
	if o.OnError == nil {
		o.OnError = func(ctx context.Context, op string, err error) {
			slog.Default().LogAttrs(ctx, slog.LevelWarn, "redisguard: redis failure tolerated",
				slog.String("op", op), slog.String("error", err.Error()))
		}
	}
	if o.Policy != FailOpen && o.Policy != FailClosed {
		return nil, fmt.Errorf("%w: unknown failure policy %d", ErrInvalid, o.Policy)
	}
	return &Guard{client: client, opts: o, inFlightMillis: o.InFlightTTL.Milliseconds()}, nil
}

// State is what the guard knows about a key.
type State int

const (
	// StateFirst: this check marked the key. Run the request, then Commit its response, or
	// Release the mark if it failed.
	StateFirst State = iota + 1
	// StateInProgress: another request marked the key and has not committed or released it.
	StateInProgress
	// StateCached: the key committed and Redis holds its response for this very fingerprint
	// (Sighting.Response); it can be replayed without asking PostgreSQL.
	StateCached
	// StateCommitted: the key committed but Redis holds no response this request may get: it
	// was too large to cache, was stored for a different fingerprint, or does not decode.
	// Ask PostgreSQL (the dedupe core), which replays it or reports the mismatch.
	StateCommitted
)

// String returns the state's name as logged: first, in_progress, cached, committed.
func (s State) String() string {
	switch s {
	case StateFirst:
		return "first"
	case StateInProgress:
		return "in_progress"
	case StateCached:
		return "cached"
	case StateCommitted:
		return "committed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Sighting is the result of Check. Its methods are not safe for concurrent use.
type Sighting struct {
	// State is what the guard found.
	State State
	// Response is the cached response when State is StateCached.
	Response dedupe.Response

	g     *Guard
	req   dedupe.Request
	codec dedupe.BodyCodec
	key   string
	mark  string // the pending mark: 'P' and this sighting's owner token
	start time.Time
	ttl   time.Duration // cache lifetime counted from start
	done  bool          // committed or released
}

// Check looks req's (scope, key) up in Redis and, when the key is unknown, marks it as in
// flight for InFlightTTL, atomically (the mark and its TTL are set in the same step, by a
// script), so of any number of concurrent checks exactly one sees StateFirst. A cached
// response is returned only when its fingerprint equals req.Fingerprint.
//
// Cost: one round trip (guard_check.lua), bounded by Timeout. Input is checked first, as the
// dedupe core would, with the same errors (dedupe.ErrInvalidKey, ...). A Redis failure
// returns an error wrapping ErrUnavailable; Check applies no failure policy (Do does).
func (g *Guard) Check(ctx context.Context, req dedupe.Request) (*Sighting, error) {
	return g.check(ctx, req, g.opts.BodyCodec)
}

func (g *Guard) check(ctx context.Context, req dedupe.Request, codec dedupe.BodyCodec) (*Sighting, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	ttl := g.opts.CacheTTL
	if req.TTL > 0 && req.TTL < ttl {
		ttl = req.TTL
	}
	s := &Sighting{g: g, req: req, codec: codec, key: g.key(req), mark: newMark(), start: time.Now(), ttl: ttl}
	ctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	defer cancel()
	// The script answers a first sighting with 1, not nil: a nil reply is an error to go-redis,
	// which then runs its retry classification, a dozen allocations per check.
	reply, err := guardCheck.Run(ctx, g.client, []string{s.key}, s.mark, g.inFlightMillis).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: check: %w", ErrUnavailable, err)
	}
	v, ok := reply.(string)
	if !ok {
		s.State = StateFirst
		return s, nil
	}
	s.done = true // nothing of ours to commit or release
	switch {
	case len(v) > 0 && v[0] == statePending:
		s.State = StateInProgress
	case len(v) > 1+ownerLen && v[0] == stateCommitted:
		fp, resp, err := decodeCommitted([]byte(v[1+ownerLen:]))
		if err == nil && resp != nil && codec != nil {
			resp.Body, err = codec.Open(req.Scope, req.Key, resp.Body)
		}
		if err == nil && resp != nil && bytes.Equal(fp, req.Fingerprint) {
			s.State, s.Response = StateCached, *resp
		} else {
			s.State = StateCommitted
		}
	default:
		s.State = StateCommitted
	}
	return s, nil
}

// Commit stores the committed response (res.Response) over this sighting's mark, so
// duplicates are replayed from Redis. The entry lives for CacheTTL, and never past the
// request's TTL counted from Check nor past res.ExpiresAt (the key row's expiry, which
// dedupe.Deduper.Do reports; zero means unknown), so Redis forgets the key no later than
// PostgreSQL does. With a body codec the body is sealed first; a body that does not seal, or
// a response larger than MaxCachedBytes, is recorded as committed without it. Another
// request's mark or entry is never overwritten. Call it only after the response committed in
// PostgreSQL; it does nothing unless the sighting is StateFirst and neither committed nor
// released yet.
//
// Cost: one round trip (guard_commit.lua), bounded by Timeout.
func (s *Sighting) Commit(ctx context.Context, res dedupe.Result) error {
	if s.State != StateFirst || s.done {
		return nil
	}
	ttl := s.ttl - time.Since(s.start)
	if !res.ExpiresAt.IsZero() {
		ttl = min(ttl, time.Until(res.ExpiresAt))
	}
	if ttl < time.Millisecond {
		return s.Release(ctx) // the key's life is over: leave nothing behind
	}
	s.done = true
	resp := &res.Response
	if s.codec != nil {
		sealed, err := s.codec.Seal(s.req.Scope, s.req.Key, resp.Body)
		if err == nil {
			resp = &dedupe.Response{Status: resp.Status, Header: resp.Header, Body: sealed}
		} else {
			resp = nil // never cache a body the codec was meant to hide
		}
	}
	entry := encodeCommitted(s.mark[1:], s.req.Fingerprint, resp)
	if len(entry) > s.g.opts.MaxCachedBytes {
		entry = encodeCommitted(s.mark[1:], s.req.Fingerprint, nil)
	}
	ctx, cancel := context.WithTimeout(ctx, s.g.opts.Timeout)
	defer cancel()
	err := guardCommit.Run(ctx, s.g.client, []string{s.key}, s.mark, entry, ttl.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("%w: commit: %w", ErrUnavailable, err)
	}
	return nil
}

// Release deletes this sighting's mark, if it is still this sighting's (compare and delete),
// so a retry of a failed request is not turned away as in progress until InFlightTTL runs out.
// A mark that expired and was replaced by another request's is left alone. It does nothing
// unless the sighting is StateFirst and neither committed nor released yet.
//
// Cost: one round trip (guard_release.lua), bounded by Timeout.
func (s *Sighting) Release(ctx context.Context) error {
	if s.State != StateFirst || s.done {
		return nil
	}
	s.done = true
	ctx, cancel := context.WithTimeout(ctx, s.g.opts.Timeout)
	defer cancel()
	if err := guardRelease.Run(ctx, s.g.client, []string{s.key}, s.mark).Err(); err != nil {
		return fmt.Errorf("%w: release: %w", ErrUnavailable, err)
	}
	return nil
}

// Do runs req through the guard and then, when needed, through r (normally a
// *dedupe.Deduper), returning what the dedupe core returns:
//
//   - StateFirst: r.Do runs. On success its response is committed to Redis (Commit, sealed
//     with the runner's body codec, never past Result.ExpiresAt: a replay from PostgreSQL
//     after Redis lost the key is cached only for what is left of the row's life) and
//     returned; on error or panic the mark is released (Release) and the error returned.
//     When db is a pgx.Tx (r.Do joins the caller's transaction, which commits after Do
//     returns, or not at all), the mark is released on success too and nothing is cached:
//     the next duplicate asks PostgreSQL.
//   - StateInProgress: a *dedupe.KeyError wrapping dedupe.ErrInProgress (its message says
//     "marked in Redis"), whatever the request's fingerprint (the mark does not hold one);
//     PostgreSQL is not asked.
//   - StateCached: Result{Response: cached, Source: dedupe.SourceRedis,
//     Attempts: 0}; PostgreSQL is not asked.
//   - StateCommitted: r.Do runs and answers from PostgreSQL (replay, or
//     dedupe.ErrFingerprintMismatch).
//   - Redis failed or exceeded Timeout: with FailOpen, OnError is told and r.Do runs alone
//     (its result is not cached); with FailClosed, a *dedupe.KeyError wrapping
//     ErrUnavailable is returned and nothing runs. A check that timed out after Redis had
//     applied it leaves a mark nobody settles: duplicates of that key are turned away as in
//     progress until InFlightTTL, and never run twice.
//
// Cost on top of r.Do: one Redis round trip for the check, plus one to commit or release after
// a first sighting; a replay from Redis costs one round trip in all. Commit and release run
// even when ctx was cancelled meanwhile (bounded by Timeout), so a committed request never
// leaves its mark behind because its client went away. Failures after the check never change
// the result; they go to OnError.
func (g *Guard) Do(ctx context.Context, r dedupe.Runner, db dedupe.DB, req dedupe.Request, fn dedupe.Func) (out dedupe.Result, outErr error) {
	if g.opts.Tracer != nil {
		var t *guardTrace
		ctx, t = g.traceStart(ctx, req)
		defer t.end(ctx, &out, &outErr)
	}
	if err := ctx.Err(); err != nil {
		return dedupe.Result{}, err
	}
	s, err := g.check(ctx, req, g.codecFor(r))
	switch {
	case err == nil:
	case !errors.Is(err, ErrUnavailable):
		return dedupe.Result{}, err // invalid input: the same error the core would give
	case g.opts.Policy == FailClosed:
		return dedupe.Result{}, &dedupe.KeyError{Scope: req.Scope, Key: req.Key, Err: err}
	default:
		g.opts.OnError(ctx, "check", err)
		return r.Do(ctx, db, req, fn)
	}

	switch s.State {
	case StateCached:
		return dedupe.Result{Response: s.Response, Source: dedupe.SourceRedis}, nil
	case StateInProgress:
		return dedupe.Result{}, &dedupe.KeyError{Scope: req.Scope, Key: req.Key, Err: errMarkedInRedis}
	case StateCommitted:
		return r.Do(ctx, db, req, fn)
	}

	// First sighting. Whatever happens in r.Do, including a panic, the mark is committed or
	// released before Do returns.
	var res dedupe.Result
	committed := false
	defer func() {
		if committed {
			g.settle(ctx, s, &res)
		} else {
			g.settle(ctx, s, nil)
		}
	}()
	res, err = r.Do(ctx, db, req, fn)
	// In a joined transaction the key commits (or rolls back) with the caller's transaction,
	// after Do returns: caching the response now could replay a write that never commits.
	// The mark is released instead; duplicates meanwhile wait in PostgreSQL, on the key's lock.
	_, joined := db.(pgx.Tx)
	committed = err == nil && !joined
	return res, err
}

// settle commits res to s (or releases s when res is nil) even if ctx was cancelled,
// reporting a failure to OnError.
func (g *Guard) settle(ctx context.Context, s *Sighting, res *dedupe.Result) {
	bg := context.WithoutCancel(ctx)
	if res != nil {
		if err := s.Commit(bg, *res); err != nil {
			g.opts.OnError(ctx, "commit", err)
		}
		return
	}
	if err := s.Release(bg); err != nil {
		g.opts.OnError(ctx, "release", err)
	}
}

// errMarkedInRedis is dedupe.ErrInProgress, saying who noticed.
var errMarkedInRedis = fmt.Errorf("%w (marked in Redis)", dedupe.ErrInProgress)
