package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
)

// drive runs a held request from its recovery point to its end, or until a step stops it.
func (r *Runner) drive(ctx context.Context, h *held) (dedupe.Result, error) {
	res := dedupe.Result{Attempts: h.attempts}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := r.startHeartbeat(ctx, h, cancel)
	defer stop()

	st := &State{Scope: h.scope, Key: h.key, Input: h.input, Fence: h.fence, Attempt: h.attempts, seed: h.seed, outputs: map[string][]byte{}}
	next := 0
	if h.recoveryPoint != "" {
		next = -1
		for i, s := range h.flow.Steps {
			if s.name == h.recoveryPoint {
				next = i + 1
			}
		}
		if next < 0 {
			r.release(ctx, h)
			return res, fmt.Errorf("%w: %q (flow %q)", ErrUnknownStep, h.recoveryPoint, h.flow.Name)
		}
		if err := r.loadOutputs(ctx, h, st); err != nil {
			r.release(ctx, h)
			return res, fmt.Errorf("%w: %w", ErrUnfinished, err)
		}
	}
	for i := next; i < len(h.flow.Steps); i++ {
		step := h.flow.Steps[i]
		var (
			out []byte
			fin *finish
			err error
		)
		if step.local != nil {
			out, fin, err = r.runLocal(ctx, h, st, step, i == len(h.flow.Steps)-1)
		} else {
			out, fin, err = r.runForeign(ctx, h, st, step)
		}
		if cause := context.Cause(ctx); errors.Is(cause, ErrLeaseLost) {
			err = cause // whatever the step saw, the reason it stopped is the take-over
		}
		switch {
		case errors.Is(err, ErrLeaseLost):
			return res, fmt.Errorf("step %q: %w", step.name, ErrLeaseLost)
		case err != nil:
			r.release(ctx, h)
			return res, fmt.Errorf("%w: step %q: %w", ErrUnfinished, step.name, err)
		case fin != nil:
			res.Response = fin.resp
			res.ExpiresAt = fin.expiresAt
			return res, nil
		}
		st.outputs[step.name] = out
		if r.hooks.crashAfter != nil && r.hooks.crashAfter(step.name) {
			return res, errCrashed
		}
	}
	// Every step is recorded and none finished: only a foreign last step gets here (a local
	// last step is refused with ErrNoResponse before it commits).
	r.release(ctx, h)
	return res, fmt.Errorf("%w: %w", ErrUnfinished, ErrNoResponse)
}

// runLocal runs a local step in its own transaction and commits its writes with its output
// and the new recovery point, or with the response that finishes the request.
func (r *Runner) runLocal(ctx context.Context, h *held, st *State, step Step, last bool) (out []byte, fin *finish, err error) {
	tx, err := r.db.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	out, err = step.local(ctx, tx, st)
	if f, ok := finishOf(err); ok {
		fin, err = f, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if fin == nil && last {
		return nil, nil, ErrNoResponse
	}
	if err := r.record(ctx, tx, h, step.name, out, fin); err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, err
	}
	return out, fin, nil
}

// runForeign makes a step's call with no transaction open, then records its outcome: one
// statement, in autocommit.
func (r *Runner) runForeign(ctx context.Context, h *held, st *State, step Step) ([]byte, *finish, error) {
	out, err := step.foreign(ctx, st)
	fin, ok := finishOf(err)
	if err != nil && !ok {
		return nil, nil, err // unknown outcome: nothing is recorded, the call is re-driven
	}
	err = r.record(ctx, r.db, h, step.name, out, fin)
	if err == nil && r.hooks.afterRecord != nil {
		err = r.hooks.afterRecord(step.name)
	}
	if err == nil || errors.Is(err, ErrLeaseLost) {
		return out, fin, err
	}
	// The commit's acknowledgement may have been lost with the commit itself done. Read back
	// what is recorded: this holder's record means it committed, and the call is not made
	// again; none means it did not, and the request stays unfinished.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	var fence int64
	var recorded []byte
	if rerr := r.db.QueryRow(cctx, r.q.readStep, h.scope, h.key, step.name).Scan(&recorded, &fence); rerr != nil || fence != h.fence {
		return nil, nil, err
	}
	if fin != nil {
		return nil, nil, err // a finish also stored the response: let a retry replay it
	}
	return recorded, nil, nil
}

// querier is a transaction, or the pool for a statement in autocommit.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// record writes a step's outcome in tx, in one statement: first the fenced change of the
// request row, which locks it (so a take-over waits for this transaction, or this one finds
// the fence moved and changes nothing), then the step's output.
func (r *Runner) record(ctx context.Context, tx querier, h *held, step string, out []byte, fin *finish) error {
	if out == nil {
		out = []byte{}
	}
	if fin == nil {
		var n int64
		if err := tx.QueryRow(ctx, r.q.advance, h.scope, h.key, h.fence, step, micros(r.opts.Lease), out).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			return ErrLeaseLost
		}
		return nil
	}
	if n := fin.resp.Size(); n > r.opts.MaxResponseBytes {
		return fmt.Errorf("%w: %d bytes, the limit is %d", dedupe.ErrResponseTooLarge, n, r.opts.MaxResponseBytes)
	}
	headers, err := encodeHeaders(fin.resp.Header)
	if err != nil {
		return err
	}
	var lifeMicros int64
	err = tx.QueryRow(ctx, r.q.finish, h.scope, h.key, h.fence, step, fin.resp.Status, headers,
		bodyOrEmpty(fin.resp.Body), micros(r.opts.TTL), out).Scan(&lifeMicros)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrLeaseLost
	}
	if err != nil {
		return err
	}
	fin.expiresAt = time.Now().Add(time.Duration(lifeMicros) * time.Microsecond)
	return nil
}

// release gives the lease back after a step stopped, so a retry need not wait it out. It
// runs even when ctx ended (that may be why the step stopped).
func (r *Runner) release(ctx context.Context, h *held) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	_, _ = r.db.Exec(cctx, r.q.release, h.scope, h.key, h.fence)
}

func (r *Runner) loadOutputs(ctx context.Context, h *held, st *State) error {
	rows, err := r.db.Query(ctx, r.q.outputs, h.scope, h.key)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var out []byte
		if err := rows.Scan(&name, &out); err != nil {
			return err
		}
		st.outputs[name] = out
	}
	return rows.Err()
}

// startHeartbeat renews h's lease every Options.Heartbeat until the returned stop is called.
// When the fence moved (the request was taken over), or no renewal succeeded for a whole
// lease, it cancels ctx with ErrLeaseLost. stop waits for the goroutine to end.
func (r *Runner) startHeartbeat(ctx context.Context, h *held, cancel context.CancelCauseFunc) (stop func()) {
	if r.opts.Heartbeat < 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.opts.Heartbeat)
		defer t.Stop()
		renewed := time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			tag, err := r.db.Exec(ctx, r.q.heartbeat, h.scope, h.key, h.fence, micros(r.opts.Lease))
			switch {
			case err == nil && tag.RowsAffected() == 0:
				cancel(ErrLeaseLost)
				return
			case err == nil:
				renewed = time.Now()
			case time.Since(renewed) >= r.opts.Lease:
				cancel(ErrLeaseLost)
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

func bodyOrEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// encodeHeaders turns headers into JSON text for a $n::jsonb parameter; nil for none.
func encodeHeaders(h map[string][]string) (*string, error) {
	if len(h) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	s := string(b)
	return &s, nil
}

func decodeResponse(status *int32, headers *string, body []byte) (dedupe.Response, error) {
	if status == nil {
		return dedupe.Response{}, dedupe.ErrIncomplete
	}
	resp := dedupe.Response{Status: int(*status), Body: body}
	if resp.Body == nil {
		resp.Body = []byte{}
	}
	if headers != nil {
		if err := json.Unmarshal([]byte(*headers), &resp.Header); err != nil {
			return dedupe.Response{}, fmt.Errorf("flow: stored headers: %w", err)
		}
	}
	return resp, nil
}
