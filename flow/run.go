package flow

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/backoff"
)

// maxClaimRounds bounds how often Run looks again after losing a race for the row (it
// changed between the claim and the look at it).
const maxClaimRounds = 16

// releaseTimeout bounds the statement that gives a lease back after ctx ended.
const releaseTimeout = 5 * time.Second

// held is a request this process holds the lease of.
type held struct {
	flow          *Flow
	scope, key    string
	fence         int64
	attempts      int
	recoveryPoint string
	seed, input   []byte
}

// Run runs the request req with the flow named flowName, or answers for it, and returns its
// response as dedupe.Do does:
//
//   - new key: the request is claimed with a lease, and its steps run from the first; the
//     response of the step that calls Finish is stored and returned (Result.Source
//     dedupe.SourceExecuted);
//   - finished key, same fingerprint: the stored response, nothing runs (SourcePostgres);
//   - key used with another fingerprint or another flow: dedupe.ErrFingerprintMismatch;
//   - key held by a live lease: dedupe.ErrInProgress, after waiting up to Options.LockWait
//     for it to finish;
//   - key whose holder went away (its lease ran out), inside the re-drive window: taken over
//     with a new fence and resumed from its recovery point, with the input first given;
//   - the same past the re-drive window: ErrReconcile;
//   - a step that fails with an unknown outcome, or ctx ending: ErrUnfinished, the recovery
//     point kept and the lease given back, so that a retry resumes at once;
//   - a take-over while this holder was paused: ErrLeaseLost, nothing of it recorded.
//
// input is kept with the request and given to every step (State.Input); a retry's input is
// ignored in favour of the first one's, which the fingerprint should cover.
//
// Cost for a new key: the claim, one round trip (two statements pipelined); then per local
// step one transaction (BEGIN, its statements, one statement recording its outcome behind the
// fence, COMMIT), per foreign step its call and one statement in autocommit recording the
// outcome. A replay costs two round trips. A heartbeat renews the lease every
// Options.Heartbeat while a step runs. No transaction is open during a call, and none lasts
// longer than one step.
func (r *Runner) Run(ctx context.Context, flowName string, req dedupe.Request, input []byte) (dedupe.Result, error) {
	if err := req.Validate(); err != nil {
		return dedupe.Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	f := r.flows[flowName]
	if f == nil {
		return dedupe.Result{}, fmt.Errorf("%w: no flow named %q", ErrInvalid, flowName)
	}
	if err := ctx.Err(); err != nil {
		return dedupe.Result{}, err
	}
	res, err := r.run(ctx, f, req, input)
	if err != nil {
		return res, &dedupe.KeyError{Scope: req.Scope, Key: req.Key, Attempts: res.Attempts, Err: err}
	}
	return res, nil
}

func (r *Runner) run(ctx context.Context, f *Flow, req dedupe.Request, input []byte) (dedupe.Result, error) {
	seed := make([]byte, 32)
	_, _ = rand.Read(seed) // crypto/rand.Read never fails
	ttl := r.opts.TTL
	if req.TTL > 0 {
		ttl = max(req.TTL, r.opts.RedriveWindow)
	}
	fingerprint := req.Fingerprint
	if fingerprint == nil {
		fingerprint = []byte{}
	}
	if input == nil {
		input = []byte{}
	}
	var deadline time.Time
	if r.opts.LockWait > 0 {
		deadline = time.Now().Add(r.opts.LockWait)
	}
	poll := 10 * time.Millisecond
	for round := 0; round < maxClaimRounds; {
		h, err := r.claim(ctx, f, req, fingerprint, input, seed, ttl)
		if err != nil {
			return dedupe.Result{}, err
		}
		if h != nil {
			return r.drive(ctx, h)
		}
		res, err, again := r.inspect(ctx, f, req, fingerprint)
		switch {
		case !again:
			return res, err
		case errors.Is(err, dedupe.ErrInProgress):
			// Held by a live lease: poll until it finishes, the wait runs out, or ctx ends.
			if deadline.IsZero() || !time.Now().Add(poll).Before(deadline) {
				return res, err
			}
			if err := backoff.Sleep(ctx, poll); err != nil {
				return res, err
			}
			poll = min(2*poll, 250*time.Millisecond)
		default:
			round++ // the row changed under us: look again
		}
	}
	return dedupe.Result{}, errors.New("flow: key changed hands too often while claiming")
}

// claim inserts or takes over the request: one round trip carrying the removal of an
// expired finished row and the claim. A nil *held means the row exists and was not taken.
func (r *Runner) claim(ctx context.Context, f *Flow, req dedupe.Request, fingerprint, input, seed []byte, ttl time.Duration) (*held, error) {
	b := &pgx.Batch{}
	b.Queue(r.q.dropExpired, req.Scope, req.Key)
	h := &held{flow: f, scope: req.Scope, key: req.Key}
	found := false
	b.Queue(r.q.claim, req.Scope, req.Key, fingerprint, f.Name, input, seed,
		micros(r.opts.Lease), micros(r.opts.RedriveWindow), micros(ttl)).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			found = true
			if err := rows.Scan(&h.fence, &h.attempts, &h.recoveryPoint, &h.seed, &h.input); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	// One round trip; the two statements run in one implicit transaction.
	if err := r.db.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	if !found {
		return nil, nil
	}
	return h, nil
}

// inspect reads a row that claim did not take and says what it means: a final answer
// (again false), or dedupe.ErrInProgress / a changed row (again true).
func (r *Runner) inspect(ctx context.Context, f *Flow, req dedupe.Request, fingerprint []byte) (res dedupe.Result, err error, again bool) {
	var (
		storedFP                    []byte
		flowName, state             string
		leased, redrivable, expired bool
		status                      *int32
		headers                     *string
		body                        []byte
		lifeMicros                  int64
		attempts                    int
	)
	err = r.db.QueryRow(ctx, r.q.inspect, req.Scope, req.Key).Scan(&storedFP, &flowName, &state,
		&leased, &redrivable, &expired, &status, &headers, &body, &lifeMicros, &attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, nil, true
	}
	if err != nil {
		return res, err, false
	}
	res.Attempts = attempts
	if string(storedFP) != string(fingerprint) || flowName != f.Name {
		if state == "finished" && expired {
			return res, nil, true
		}
		return res, dedupe.ErrFingerprintMismatch, false
	}
	switch state {
	case "finished":
		if expired {
			return res, nil, true
		}
		res.Source = dedupe.SourcePostgres
		res.ExpiresAt = time.Now().Add(time.Duration(lifeMicros) * time.Microsecond)
		res.Response, err = decodeResponse(status, headers, body)
		return res, err, false
	case "reconcile":
		return res, ErrReconcile, false
	}
	switch {
	case leased:
		return res, dedupe.ErrInProgress, true
	case !redrivable:
		return res, r.reconcileOne(ctx, req.Scope, req.Key), false
	}
	return res, nil, true // the lease ran out between the claim and this look: claim again
}

// reconcileOne moves one request past its window to reconciliation and tells OnReconcile.
func (r *Runner) reconcileOne(ctx context.Context, scope, key string) error {
	p := Pending{Scope: scope, Key: key}
	err := r.db.QueryRow(ctx, r.q.toReconcile, scope, key).Scan(&p.Flow, &p.RecoveryPoint, &p.Attempts, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrReconcile // another caller moved it first, and told the hook
	}
	if err != nil {
		return err
	}
	if r.opts.OnReconcile != nil {
		r.opts.OnReconcile(ctx, p)
	}
	return ErrReconcile
}
