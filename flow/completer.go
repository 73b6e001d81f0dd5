package flow

import (
	"context"
	"fmt"
	"time"

	"github.com/pgonce/pgonce/dedupe"
)

// Pending describes a request that is not finished: one awaiting reconciliation, or one the
// completer resumed.
type Pending struct {
	Scope, Key string
	// Flow is the flow the request runs.
	Flow string
	// RecoveryPoint is the last step whose outcome committed; "" before the first.
	RecoveryPoint string
	// Attempts counts the runs of the request so far.
	Attempts int
	// CreatedAt is when the request was first claimed; UpdatedAt when its row last changed.
	CreatedAt, UpdatedAt time.Time
}

// CompleteResult counts what one Complete call did.
type CompleteResult struct {
	// Resumed is the number of requests taken over and run from their recovery points;
	// Finished of those that ended with a stored response; Unfinished of those that stopped
	// again (ErrUnfinished, ErrLeaseLost), to be taken by a later round once their lease
	// runs out.
	Resumed, Finished, Unfinished int
	// Reconcile is the number of requests moved to reconciliation (past their window).
	Reconcile int
}

// DefaultCompleteBatch is how many requests Complete takes per call when not told.
const DefaultCompleteBatch = 100

// Complete is the completer, once: it takes up to batch (0: DefaultCompleteBatch) running
// requests whose lease ran out inside their re-drive window, with FOR UPDATE SKIP LOCKED so
// that several completers and retries never take the same one, bumps each one's fence and
// lease in the same statement, and resumes them one after the other from their recovery
// points. Requests of flows this Runner does not know are left alone. It also moves requests
// whose lease ran out past their window to reconciliation (calling Options.OnReconcile).
// A resumed request's error is counted, not returned; the error is for the completer's own
// statements and ctx.
func (r *Runner) Complete(ctx context.Context, batch int) (CompleteResult, error) {
	var cr CompleteResult
	if batch <= 0 {
		batch = DefaultCompleteBatch
	}
	rows, err := r.db.Query(ctx, r.q.dueReconcile, batch)
	if err != nil {
		return cr, err
	}
	var moved []Pending
	for rows.Next() {
		var p Pending
		if err := rows.Scan(&p.Scope, &p.Key, &p.Flow, &p.RecoveryPoint, &p.Attempts, &p.CreatedAt, &p.UpdatedAt); err != nil {
			rows.Close()
			return cr, err
		}
		moved = append(moved, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return cr, err
	}
	cr.Reconcile = len(moved)
	if r.opts.OnReconcile != nil {
		for _, p := range moved {
			r.opts.OnReconcile(ctx, p)
		}
	}

	rows, err = r.db.Query(ctx, r.q.due, r.names, batch, micros(r.opts.Lease))
	if err != nil {
		return cr, err
	}
	var taken []*held
	for rows.Next() {
		h := &held{}
		var name string
		if err := rows.Scan(&h.scope, &h.key, &name, &h.fence, &h.attempts, &h.recoveryPoint, &h.seed, &h.input); err != nil {
			rows.Close()
			return cr, err
		}
		h.flow = r.flows[name]
		taken = append(taken, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return cr, err
	}
	for i, h := range taken {
		if ctx.Err() != nil {
			// Give back what this call took and will not run.
			for _, rest := range taken[i:] {
				r.release(ctx, rest)
			}
			return cr, ctx.Err()
		}
		cr.Resumed++
		if _, err := r.drive(ctx, h); err != nil {
			cr.Unfinished++
		} else {
			cr.Finished++
		}
	}
	return cr, nil
}

// RunCompleter calls Complete every interval until ctx ends, and returns ctx's error. A
// failed round (the database unreachable) is passed to onError, when set, and the next round
// runs as planned. Run one per process, or several: they never take the same request.
func (r *Runner) RunCompleter(ctx context.Context, interval time.Duration, onError func(error)) error {
	if interval <= 0 {
		return fmt.Errorf("%w: completer interval %v", ErrInvalid, interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.Complete(ctx, 0); err != nil && ctx.Err() == nil && onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ListReconcile returns up to limit requests awaiting reconciliation, longest waiting first.
func (r *Runner) ListReconcile(ctx context.Context, limit int) ([]Pending, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalid, limit)
	}
	rows, err := r.db.Query(ctx, r.q.listReconcile, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Pending
	for rows.Next() {
		var p Pending
		if err := rows.Scan(&p.Scope, &p.Key, &p.Flow, &p.RecoveryPoint, &p.Attempts, &p.CreatedAt, &p.UpdatedAt); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Resolve finishes a request awaiting reconciliation with resp, once a person has found out
// what its calls did: retries then get resp. ErrNotFound when no such request awaits.
func (r *Runner) Resolve(ctx context.Context, scope, key string, resp dedupe.Response) error {
	headers, err := encodeHeaders(resp.Header)
	if err != nil {
		return err
	}
	tag, err := r.db.Exec(ctx, r.q.resolve, scope, key, resp.Status, headers, bodyOrEmpty(resp.Body), micros(r.opts.TTL))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Redrive puts a request awaiting reconciliation back to running, with a new re-drive window
// of Options.RedriveWindow from now, for when a person has made sure that repeating its
// calls is safe (say, the other service confirmed it still knows the key). The next retry or
// completer round resumes it. ErrNotFound when no such request awaits.
func (r *Runner) Redrive(ctx context.Context, scope, key string) error {
	tag, err := r.db.Exec(ctx, r.q.redrive, scope, key, micros(r.opts.RedriveWindow))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Purge deletes finished requests past their expiry (and their steps), in statements of at
// most batch rows (0: dedupe.DefaultPurgeBatch), until none is left; it returns how many it
// deleted. Running requests and those awaiting reconciliation are never purged.
func (r *Runner) Purge(ctx context.Context, batch int) (int64, error) {
	if batch <= 0 {
		batch = dedupe.DefaultPurgeBatch
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tag, err := r.db.Exec(ctx, r.q.purge, batch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}
