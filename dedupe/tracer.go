package dedupe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/pgonce/pgonce/internal/tracewait"
)

// Tracer traces deduplicated requests, in the shape of pgx's QueryTracer: TraceDoStart is
// called when a request begins and may return a derived context (carrying a span, say), which
// the request then runs with (fn receives it) and TraceDoEnd receives. Set one in
// Options.Tracer, redisguard.GuardOptions.Tracer or dedupehttp.Config.Tracer; each component
// reports its own span, so a request through all three makes three nested calls. The
// otelpgonce module adapts a Tracer to OpenTelemetry. Implementations must be safe for
// concurrent use. A nil Tracer costs nothing: no allocation, no clock read.
type Tracer interface {
	TraceDoStart(ctx context.Context, data TraceDoStartData) context.Context
	TraceDoEnd(ctx context.Context, data TraceDoEndData)
}

// Components and operations reported in TraceDoStartData.
const (
	ComponentDedupe     = "dedupe"     // Deduper.Do, operation OperationDo
	ComponentRedisGuard = "redisguard" // redisguard.Guard.Do (OperationDo), Locker.Obtain (OperationObtain)
	ComponentHTTP       = "dedupehttp" // the dedupehttp middleware, operation OperationRequest
	// ComponentPessimistic is the pessimistic package: RowLock (OperationRowLock) and RunOnce
	// (OperationRunOnce).
	ComponentPessimistic = "pessimistic"

	OperationDo      = "do"
	OperationRequest = "request"
	OperationObtain  = "obtain"
	OperationRowLock = "row_lock"
	OperationRunOnce = "run_once"
)

// TraceDoStartData describes a request as it begins. Fields may be added.
type TraceDoStartData struct {
	// Component is the package tracing the request: ComponentDedupe, ComponentRedisGuard,
	// ComponentHTTP, ComponentPessimistic.
	Component string
	// Operation is what the component does: OperationDo, OperationRequest.
	Operation string
	// Scope is the request's scope (for the middleware: method, route, tenant); empty for
	// lock helpers.
	Scope string
	// KeyHash identifies the key (for lock helpers, the lock's name) without revealing it:
	// KeyHash(Key). Empty when the request carries no key (a middleware request refused for
	// a missing key).
	KeyHash string
	// Key is the idempotency key itself, only when the component's TraceKeys option is set:
	// keys chosen by clients may be guessable or carry personal data.
	Key string
}

// TraceDoEndData describes how a request ended. Fields may be added.
type TraceDoEndData struct {
	// Outcome is how the request ended.
	Outcome Outcome
	// Source is where a replayed response came from; SourceExecuted unless Outcome is
	// OutcomeReplayed.
	Source Source
	// Attempts is Result.Attempts: the transactions run (0 when none ran: invalid input, a
	// replay or refusal from Redis).
	Attempts int
	// Status is the HTTP status sent (ComponentHTTP), else the response's status when there is
	// one (executed or replayed), else 0.
	Status int
	// Wait is, for lock helpers, the time spent obtaining the lock (retries included); for
	// requests, the wall time of the statements that claimed the key, summed over claim rounds
	// and transaction attempts: an uncontended claim adds one round trip; a claim that waited
	// for a concurrent request holding the same key adds that wait. Zero when no claim ran
	// (invalid input, a Redis replay). Not included: connection acquisition, BEGIN, fn.
	Wait time.Duration
	// Duration is the wall time from TraceDoStart to TraceDoEnd.
	Duration time.Duration
	// Err is the error returned to the caller, nil on success.
	Err error
}

// Outcome is how a traced request ended, as reported to tracers and used as a metric label.
type Outcome string

// Outcomes.
const (
	OutcomeExecuted    Outcome = "executed"    // the function (handler) ran and its response committed
	OutcomeReplayed    Outcome = "replayed"    // a stored response was returned; nothing ran
	OutcomeMismatch    Outcome = "mismatch"    // ErrFingerprintMismatch
	OutcomeInProgress  Outcome = "in_progress" // ErrInProgress: a concurrent request holds the key
	OutcomeInvalid     Outcome = "invalid"     // refused input (key, scope, body too large...); nothing ran
	OutcomeRolledBack  Outcome = "rolled_back" // dedupehttp: the handler's status said not to commit
	OutcomeUnavailable Outcome = "unavailable" // ErrUnavailable: a runner in front refused (Redis down, FailClosed)
	OutcomeError       Outcome = "error"       // any other failure, the function's own errors included

	OutcomeObtained    Outcome = "obtained"     // a lock helper got its lock
	OutcomeNotObtained Outcome = "not_obtained" // a lock helper gave up: the lock is held (or ctx ended)
)

// OutcomeOf classifies what Do (or a Runner wrapping it) returned.
func OutcomeOf(res Result, err error) Outcome {
	switch {
	case err == nil && res.Replayed():
		return OutcomeReplayed
	case err == nil:
		return OutcomeExecuted
	case errors.Is(err, ErrFingerprintMismatch):
		return OutcomeMismatch
	case errors.Is(err, ErrInProgress):
		return OutcomeInProgress
	case errors.Is(err, ErrUnavailable):
		return OutcomeUnavailable
	case errors.Is(err, ErrInvalid):
		return OutcomeInvalid
	}
	return OutcomeError
}

// KeyHash returns the hex form of the first 8 bytes of the SHA-256 of key: enough to tell
// keys apart in traces, without putting a client's key in them.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

// MultiTracer returns a Tracer calling each non-nil tracer in turn (TraceDoEnd with the
// context its own TraceDoStart returned), or nil when there is none.
func MultiTracer(tracers ...Tracer) Tracer {
	var ts multiTracer
	for _, t := range tracers {
		if t != nil {
			ts = append(ts, t)
		}
	}
	switch len(ts) {
	case 0:
		return nil
	case 1:
		return ts[0]
	}
	return ts
}

type multiTracer []Tracer

type multiCtxKey struct{}

func (m multiTracer) TraceDoStart(ctx context.Context, data TraceDoStartData) context.Context {
	ctxs := make([]context.Context, len(m))
	for i, t := range m {
		ctx = t.TraceDoStart(ctx, data)
		ctxs[i] = ctx
	}
	return context.WithValue(ctx, multiCtxKey{}, ctxs)
}

func (m multiTracer) TraceDoEnd(ctx context.Context, data TraceDoEndData) {
	ctxs, _ := ctx.Value(multiCtxKey{}).([]context.Context)
	for i := len(m) - 1; i >= 0; i-- { // innermost first, like nested spans
		c := ctx
		if i < len(ctxs) {
			c = ctxs[i]
		}
		m[i].TraceDoEnd(c, data)
	}
}

// doTrace is one traced call of Deduper.Do.
type doTrace struct {
	tracer Tracer
	span   *tracewait.Span
}

func (d *Deduper) traceStart(ctx context.Context, req Request) (context.Context, *doTrace) {
	t := &doTrace{tracer: d.opts.Tracer}
	ctx = t.tracer.TraceDoStart(ctx, StartData(ComponentDedupe, OperationDo, req.Scope, req.Key, d.opts.TraceKeys))
	ctx, t.span = tracewait.Start(ctx)
	return ctx, t
}

func (t *doTrace) end(ctx context.Context, res *Result, err *error) {
	t.tracer.TraceDoEnd(ctx, EndData(*res, *err, t.span.Wait(), t.span.Duration()))
}

// StartData fills a TraceDoStartData: KeyHash from key (empty for an empty key), and Key only
// when withKey is set. For components built on the Deduper.
func StartData(component, operation, scope, key string, withKey bool) TraceDoStartData {
	data := TraceDoStartData{Component: component, Operation: operation, Scope: scope}
	if key != "" {
		data.KeyHash = KeyHash(key)
	}
	if withKey {
		data.Key = key
	}
	return data
}

// EndData fills a TraceDoEndData from what Do (or a Runner wrapping it) returned. For
// components built on the Deduper.
func EndData(res Result, err error, wait, duration time.Duration) TraceDoEndData {
	data := TraceDoEndData{
		Outcome:  OutcomeOf(res, err),
		Source:   res.Source,
		Attempts: res.Attempts,
		Wait:     wait,
		Duration: duration,
		Err:      err,
	}
	if err == nil {
		data.Status = res.Response.Status
	}
	return data
}
