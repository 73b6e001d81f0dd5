package redisguard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/backoff"
)

// LockerOptions configures a Locker. The zero value (or nil) gives the defaults noted on each
// field.
type LockerOptions struct {
	// Prefix starts every lock key; default DefaultPrefix + "lock:". A lock named key uses
	// Prefix + "{" + key + "}" and, for its fencing counter, the same + ":fence": one hash
	// tag, so Redis Cluster runs the obtain script (which touches both) on one node. Prefix
	// must not contain '{' or '}'.
	Prefix string

	// Timeout bounds each round of calls to the nodes (obtain, refresh, release, TTL);
	// default a tenth of the lock's TTL, at least 50ms. In quorum mode it is what keeps a
	// node that is down or partitioned from eating the lock's validity. Applied through the
	// context (see Client on ContextTimeoutEnabled).
	Timeout time.Duration

	// DriftFactor is the allowance for clock drift between this process and the Redis
	// servers, as a fraction of the TTL; default 0.01. The lock is considered valid until
	// start + TTL - (TTL*DriftFactor + 2ms), where start is taken before the first request
	// of the round is sent (the Redlock formula).
	DriftFactor float64

	// Tracer, when set, is told when each Obtain begins and ends (component "redisguard",
	// operation "obtain", outcome obtained, not_obtained, invalid or error); nil costs
	// nothing.
	Tracer dedupe.Tracer
	// TraceKeys puts the lock's name in the tracer's start data; by default only its hash.
	TraceKeys bool
}

// Defaults of LockerOptions.
const (
	DefaultDriftFactor = 0.01
	minLockTimeout     = 50 * time.Millisecond
)

// Locker obtains lease locks: on one Redis deployment (NewLocker: a single node, a
// Sentinel-managed primary, or a Cluster) or on a majority of independent nodes (NewQuorumLocker,
// the Redlock algorithm). Safe for concurrent use.
type Locker struct {
	nodes  []Client
	quorum int
	opts   LockerOptions
}

// NewLocker returns a Locker on one Redis deployment, or an error wrapping ErrInvalid for a
// nil client or a Prefix with a brace. It makes no round trip.
//
// What it guarantees: at most one owner holds a key at a time as long as Redis keeps the lock
// key; each successful obtain gets a fencing token larger than every earlier one for the key
// (see Lock.Token). What it does not: a holder paused past its TTL (GC, swap, a slow
// network) still believes it holds the lock, and Redis replication is asynchronous, so a
// failover can lose a lock; check Lock.Token in PostgreSQL (pessimistic.Fence) to make such a
// stale holder's writes fail.
func NewLocker(client Client, opts *LockerOptions) (*Locker, error) {
	return newLocker([]Client{client}, opts)
}

func newLocker(nodes []Client, opts *LockerOptions) (*Locker, error) {
	l := &Locker{nodes: nodes, quorum: len(nodes)/2 + 1}
	if opts != nil {
		l.opts = *opts
	}
	if l.opts.Prefix == "" {
		l.opts.Prefix = DefaultPrefix + "lock:"
	}
	if l.opts.DriftFactor <= 0 {
		l.opts.DriftFactor = DefaultDriftFactor
	}
	switch {
	case strings.ContainsAny(l.opts.Prefix, "{}"):
		return nil, fmt.Errorf("%w: lock prefix %q contains a brace", ErrInvalid, l.opts.Prefix)
	case slices.Contains(nodes, nil):
		return nil, fmt.Errorf("%w: nil client", ErrInvalid)
	}
	return l, nil
}

// LockOptions are per-Obtain options; nil means defaults.
type LockOptions struct {
	// Retry says whether and when to try again while the lock is taken; default NoRetry.
	Retry RetryStrategy

	// Owner is the owner token; default a fresh random one. Obtaining a lock held under the
	// same owner token re-enters it (see Obtain). Give the same token to code that must be
	// able to re-enter the hold, and keep it secret from everyone else: whoever knows it can
	// refresh and release the lock.
	Owner string
}

// Obtain takes the lease lock named name for ttl (millisecond resolution), or returns a
// *LockError wrapping ErrNotObtained when it is held by another owner and the retry strategy
// (default: none) or ctx gives up; the error also wraps ctx's error or the nodes' errors when
// those ended the attempts.
//
// On success the lock carries its owner token and a fencing token (Lock.Token): the obtain
// script increments the key's counter and sets the lock in one step, so every successful
// obtain of a key gets a larger token than all before it. The counter has no TTL; it never
// goes below the server clock in microseconds, so tokens keep rising even if Redis loses the
// counter (restart without persistence, failover before replication), provided server clocks
// agree to within the time such a loss takes.
//
// Re-entrancy: when the lock is held under the same owner token (LockOptions.Owner), Obtain
// succeeds at once, returns the hold's fencing token (not a new one: the outer holder's
// writes must not become stale), raises the TTL to ttl if it was lower, and counts the entry;
// each Release ends one entry and the last deletes the lock. A Refresh by any entry sets the
// whole hold's TTL. An entry's lifetime is still bounded by the TTL: a hold that expires ends
// every entry.
//
// Cost per attempt: one round trip per node (the nodes are asked in parallel), bounded by
// LockerOptions.Timeout; in quorum mode, one more parallel round trip when the nodes returned
// different tokens, and a release round when no majority was reached.
func (l *Locker) Obtain(ctx context.Context, name string, ttl time.Duration, opts *LockOptions) (lock *Lock, err error) {
	if l.opts.Tracer != nil {
		var t *obtainTrace
		ctx, t = l.traceStart(ctx, name)
		defer t.end(ctx, &lock, &err)
	}
	var o LockOptions
	if opts != nil {
		o = *opts
	}
	if err := l.checkObtain(name, ttl, o.Owner); err != nil {
		return nil, &LockError{Name: name, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, &LockError{Name: name, Err: fmt.Errorf("%w: %w", ErrNotObtained, err)}
	}
	retry := o.Retry
	if retry == nil {
		retry = NoRetry()
	}
	owner := o.Owner
	if owner == "" {
		owner = newOwner()
	}
	for attempt := 1; ; attempt++ {
		lock, nodeErr := l.try(ctx, name, owner, ttl, o.Owner != "")
		if lock != nil {
			return lock, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, &LockError{Name: name, Err: fmt.Errorf("%w: %w", ErrNotObtained, err)}
		}
		wait := retry(attempt)
		if wait <= 0 {
			if nodeErr != nil {
				return nil, &LockError{Name: name, Err: fmt.Errorf("%w: %w", ErrNotObtained, nodeErr)}
			}
			return nil, &LockError{Name: name, Err: ErrNotObtained}
		}
		if err := backoff.Sleep(ctx, wait); err != nil {
			return nil, &LockError{Name: name, Err: fmt.Errorf("%w: %w", ErrNotObtained, err)}
		}
	}
}

func (l *Locker) checkObtain(key string, ttl time.Duration, owner string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty lock key", ErrInvalid)
	case key[0] == '}':
		// "{}" would be an empty hash tag: the lock and its counter could land on different
		// cluster slots.
		return fmt.Errorf("%w: lock key starts with '}'", ErrInvalid)
	case ttl < time.Millisecond:
		return fmt.Errorf("%w: lock TTL %v is below 1ms", ErrInvalid, ttl)
	case len(owner) > 256:
		return fmt.Errorf("%w: owner token longer than 256 bytes", ErrInvalid)
	}
	return nil
}

// try makes one attempt. It returns the lock, or nil and the nodes' errors (nil when every
// node answered that the lock is held by another owner).
func (l *Locker) try(ctx context.Context, key, owner string, ttl time.Duration, ownerGiven bool) (*Lock, error) {
	keys := l.keys(key)
	start := time.Now()
	replies := l.round(ctx, ttl, func(ctx context.Context, c Client) (any, error) {
		return lockObtain.Run(ctx, c, keys, owner, ttl.Milliseconds()).Result()
	})
	var (
		got     []int // nodes that hold the lock for us now
		tokens  []int64
		errs    []error
		reenter bool
	)
	for i, r := range replies {
		status, value, err := obtainReply(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", i, err))
			continue
		}
		if status == 0 {
			continue
		}
		got = append(got, i)
		tokens = append(tokens, value)
		reenter = reenter || status == 2
	}
	lock := &Lock{l: l, key: key, owner: owner, ttl: ttl, reentered: reenter}
	if len(got) >= l.quorum && l.validUntil(start, ttl).After(time.Now()) {
		lock.token = slices.Max(tokens)
		if slices.Min(tokens) == lock.token || l.raise(ctx, keys, owner, lock.token, ttl, got) {
			if until := l.validUntil(start, ttl); until.After(time.Now()) {
				lock.expiry = until
				return lock, nil
			}
		}
	}
	// Not obtained: undo what this attempt took. A node that failed may have run the script
	// before failing, so it is released too, unless the owner token was given: then the
	// owner may hold the lock there from an earlier Obtain, and releasing would end that
	// entry instead.
	undo := got
	if !ownerGiven {
		undo = nil
		for i := range l.nodes {
			if replies[i].err != nil || slices.Contains(got, i) {
				undo = append(undo, i)
			}
		}
	}
	if len(undo) > 0 {
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout(ttl))
		l.roundOn(bg, undo, func(ctx context.Context, c Client) (any, error) {
			return lockRelease.Run(ctx, c, keys, owner, "").Result()
		})
		cancel()
	}
	return nil, errors.Join(errs...)
}

func obtainReply(r reply) (status, value int64, err error) {
	if r.err != nil {
		return 0, 0, r.err
	}
	vs, ok := r.v.([]any)
	if !ok || len(vs) != 2 {
		return 0, 0, fmt.Errorf("redisguard: unexpected obtain reply %v", r.v)
	}
	status, ok1 := vs[0].(int64)
	value, ok2 := vs[1].(int64)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("redisguard: unexpected obtain reply %v", r.v)
	}
	return status, value, nil
}

// keys returns the lock key and its fencing counter: one hash tag, so one cluster slot.
func (l *Locker) keys(key string) []string {
	k := l.opts.Prefix + "{" + key + "}"
	return []string{k, k + ":fence"}
}

func (l *Locker) drift(ttl time.Duration) time.Duration {
	return time.Duration(float64(ttl)*l.opts.DriftFactor) + 2*time.Millisecond
}

// validUntil is the end of a lease taken (or refreshed) by requests sent at start.
func (l *Locker) validUntil(start time.Time, ttl time.Duration) time.Time {
	return start.Add(ttl - l.drift(ttl))
}

func (l *Locker) timeout(ttl time.Duration) time.Duration {
	if l.opts.Timeout > 0 {
		return l.opts.Timeout
	}
	return max(ttl/10, minLockTimeout)
}

// Lock is a held lease lock. Its methods are safe for concurrent use (the watchdog refreshes
// while the holder works).
type Lock struct {
	l         *Locker
	key       string
	owner     string
	token     int64
	ttl       time.Duration
	reentered bool

	mu       sync.Mutex
	expiry   time.Time
	released bool
}

// Name returns the lock's name as given to Obtain.
func (k *Lock) Name() string { return k.key }

// Owner returns the owner token: the secret that Refresh and Release present, and that
// LockOptions.Owner takes to re-enter the hold.
func (k *Lock) Owner() string { return k.owner }

// Token returns the fencing token: larger than the token of every earlier hold of this key
// (a re-entry shares its hold's token). Pass it with every write the lock protects and let
// the storage refuse smaller ones (pessimistic.Fence does this in PostgreSQL): then a holder
// that lost the lock without noticing cannot overwrite the work of the next.
func (k *Lock) Token() int64 { return k.token }

// tokenArg is the fencing token as the lock scripts compare it with the hold's 'f' field.
func (k *Lock) tokenArg() string { return strconv.FormatInt(k.token, 10) }

// Reentered reports whether Obtain joined a hold of the same owner token rather than taking
// a free lock.
func (k *Lock) Reentered() bool { return k.reentered }

// Expiry is this process's conservative estimate of when the lease ends: the start of the
// last successful obtain or refresh round, plus the TTL, minus the drift allowance. After it,
// the lock may be someone else's. No round trip.
func (k *Lock) Expiry() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.expiry
}

// TTL returns how long Redis will keep this hold: the key's PTTL, or in quorum mode the PTTL
// that a majority of nodes still exceed; zero when the lock is no longer this hold's (held by
// another owner, free, or a later hold of the same owner token, told apart by its larger
// fencing token). Cost: one round trip per node, in parallel.
func (k *Lock) TTL(ctx context.Context) (time.Duration, error) {
	keys := k.l.keys(k.key)
	replies := k.l.round(ctx, k.ttl, func(ctx context.Context, c Client) (any, error) {
		return lockPTTL.Run(ctx, c, keys, k.owner, k.tokenArg()).Result()
	})
	var held []time.Duration
	var errs []error
	for i, r := range replies {
		n, ok := r.v.(int64)
		switch {
		case r.err != nil:
			errs = append(errs, fmt.Errorf("node %d: %w", i, r.err))
		case !ok:
			errs = append(errs, fmt.Errorf("node %d: unexpected reply %v", i, r.v))
		case n >= 0:
			held = append(held, time.Duration(n)*time.Millisecond)
		}
	}
	if len(held) >= k.l.quorum {
		slices.Sort(held)
		slices.Reverse(held)
		return held[k.l.quorum-1], nil
	}
	if len(errs) > 0 {
		return 0, &LockError{Name: k.key, Err: errors.Join(errs...)}
	}
	return 0, nil
}

// Refresh extends the lease to ttl from now, only if this hold still holds it: the same owner
// token and the same fencing token (compare and pexpire, lock_refresh.lua), so a hold that
// expired never extends a later hold of the same owner; otherwise, or when a majority of nodes cannot confirm it in
// time, it returns a *LockError wrapping ErrNotHeld (and the nodes' errors) and changes
// nothing that belongs to another owner. Cost: one round trip per node, in parallel.
func (k *Lock) Refresh(ctx context.Context, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return &LockError{Name: k.key, Err: fmt.Errorf("%w: lock TTL %v is below 1ms", ErrInvalid, ttl)}
	}
	k.mu.Lock()
	released := k.released
	k.mu.Unlock()
	if released {
		return &LockError{Name: k.key, Err: ErrNotHeld}
	}
	keys := k.l.keys(k.key)
	start := time.Now()
	ok, err := k.l.count(k.l.round(ctx, ttl, func(ctx context.Context, c Client) (any, error) {
		return lockRefresh.Run(ctx, c, keys, k.owner, k.tokenArg(), ttl.Milliseconds()).Result()
	}))
	until := k.l.validUntil(start, ttl)
	if ok < k.l.quorum || !until.After(time.Now()) {
		if err != nil {
			return &LockError{Name: k.key, Err: fmt.Errorf("%w: confirmed on %d of %d nodes: %w", ErrNotHeld, ok, len(k.l.nodes), err)}
		}
		return &LockError{Name: k.key, Err: ErrNotHeld}
	}
	k.mu.Lock()
	k.expiry = until
	k.mu.Unlock()
	return nil
}

// Release ends this hold (or this re-entry) if it still holds the lock: compare owner token
// and fencing token, then delete (lock_release.lua) on every node. A hold that expired never
// ends a later hold of the same owner token. It returns nil when a majority of nodes released
// it; a *LockError wrapping ErrNotHeld when the lock had expired or was released already
// (another owner's lock is never deleted); the nodes' errors when they could not be asked
// (the lock then expires with its TTL). Cost: one round trip per node, in parallel; none
// when this Lock was released before.
func (k *Lock) Release(ctx context.Context) error {
	k.mu.Lock()
	released := k.released
	k.released = true
	k.mu.Unlock()
	if released {
		return &LockError{Name: k.key, Err: ErrNotHeld}
	}
	keys := k.l.keys(k.key)
	ok, err := k.l.count(k.l.round(ctx, k.ttl, func(ctx context.Context, c Client) (any, error) {
		return lockRelease.Run(ctx, c, keys, k.owner, k.tokenArg()).Result()
	}))
	switch {
	case ok >= k.l.quorum:
		return nil
	case err != nil:
		return &LockError{Name: k.key, Err: err}
	}
	return &LockError{Name: k.key, Err: ErrNotHeld}
}

// count returns how many nodes answered 1, and the errors of those that failed.
func (l *Locker) count(replies []reply) (int, error) {
	ok := 0
	var errs []error
	for i, r := range replies {
		n, isInt := r.v.(int64)
		switch {
		case !r.asked:
		case r.err != nil:
			errs = append(errs, fmt.Errorf("node %d: %w", i, r.err))
		case !isInt:
			errs = append(errs, fmt.Errorf("node %d: unexpected reply %v", i, r.v))
		case n == 1:
			ok++
		}
	}
	return ok, errors.Join(errs...)
}
