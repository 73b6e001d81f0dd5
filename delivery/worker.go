package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/backoff"
)

// worker delivers messages: River calls Work for each attempt and, when Work fails,
// NextRetry for the time of the next one.
type worker struct {
	river.WorkerDefaults[args]
	c *Client
	// retryAfter holds, from Work to NextRetry of the same attempt (which River calls on
	// the same goroutine right after), the receiver's Retry-After by job id.
	retryAfter sync.Map
}

// maxDrain is how much of a response body is read so that its connection can be reused.
const maxDrain = 64 << 10

// Work runs one attempt.
func (w *worker) Work(ctx context.Context, job *river.Job[args]) error {
	c := w.c
	start := time.Now()
	var tctx context.Context
	if c.cfg.Tracer != nil {
		tctx = c.cfg.Tracer.TraceAttemptStart(ctx, TraceAttemptStartData{
			ID: job.ID, Attempt: job.Attempt, URL: job.Args.URL, KeyHash: dedupe.KeyHash(job.Args.Key),
		})
		ctx = tctx
	}
	end := func(d TraceAttemptEndData) {
		if tctx != nil {
			d.Duration = time.Since(start)
			c.cfg.Tracer.TraceAttemptEnd(tctx, d)
		}
	}

	if job.Args.OrderingKey != "" {
		wait, err := c.heldBack(ctx, job.ID, job.Args.OrderingKey, job.Metadata)
		if err != nil {
			end(TraceAttemptEndData{Err: err})
			return fmt.Errorf("delivery: ordering check: %w", err)
		}
		if wait > 0 {
			end(TraceAttemptEndData{Held: true})
			return river.JobSnooze(wait) // a snooze does not count as an attempt
		}
	}

	req, err := http.NewRequestWithContext(ctx, c.cfg.Method, job.Args.URL, bytes.NewReader(job.Args.Body))
	if err != nil { // validated at enqueue; only a row edited by hand gets here
		end(TraceAttemptEndData{Class: Dead, Final: true, Err: err})
		return river.JobCancel(fmt.Errorf("delivery: build request: %w", err))
	}
	for name, values := range job.Args.Header {
		req.Header[textproto.CanonicalMIMEHeaderKey(name)] = values
	}
	req.Header.Set("Idempotency-Key", keyHeader(job.Args.Key))
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		// Retried with the same key: the receiver may have applied it. When the Client is
		// stopping (ctx canceled), River puts the message back without counting the attempt.
		d := TraceAttemptEndData{Class: Retry, Final: job.Attempt >= job.MaxAttempts, Err: err}
		if errors.Is(ctx.Err(), context.Canceled) {
			d.Class, d.Final = 0, false
		}
		end(d)
		return fmt.Errorf("delivery: attempt %d: %w", job.Attempt, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()

	switch Classify(resp.StatusCode) {
	case Delivered:
		end(TraceAttemptEndData{Class: Delivered, Status: resp.StatusCode, Final: true})
		return nil
	case Retry:
		serr := &StatusError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
		if serr.RetryAfter > 0 && job.Attempt < job.MaxAttempts {
			w.retryAfter.Store(job.ID, serr.RetryAfter)
		}
		end(TraceAttemptEndData{Class: Retry, Status: resp.StatusCode, Final: job.Attempt >= job.MaxAttempts, Err: serr})
		return serr
	default:
		serr := &StatusError{Status: resp.StatusCode}
		end(TraceAttemptEndData{Class: Dead, Status: resp.StatusCode, Final: true, Err: serr})
		return river.JobCancel(serr)
	}
}

// NextRetry is when the next attempt runs: after the receiver's Retry-After (capped at
// MaxRetryAfter) when it sent one, else after the jittered exponential backoff.
func (w *worker) NextRetry(job *river.Job[args]) time.Time {
	if v, ok := w.retryAfter.LoadAndDelete(job.ID); ok {
		return time.Now().Add(min(v.(time.Duration), w.c.cfg.MaxRetryAfter))
	}
	return time.Now().Add(backoff.Delay(job.Attempt, w.c.cfg.RetryBase, w.c.cfg.RetryMax))
}

// Timeout bounds an attempt.
func (w *worker) Timeout(*river.Job[args]) time.Duration { return w.c.cfg.RequestTimeout }
