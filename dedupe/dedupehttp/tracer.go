package dedupehttp

import (
	"context"
	"net/http"
	"time"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/tracewait"
)

// httpTrace is one traced request, carried in the request's context.
type httpTrace struct {
	start time.Time
	wait  *tracewait.Meter
}

type httpTraceKey struct{}

// traceStart starts the span of a deduplicated request (key is "" when it is missing or
// malformed) and returns the request with the span's context.
func (m *Middleware) traceStart(r *http.Request, key string) *http.Request {
	t := &httpTrace{start: time.Now()}
	ctx := m.tracer.TraceDoStart(r.Context(), dedupe.StartData(dedupe.ComponentHTTP, dedupe.OperationRequest, m.scope(r), key, m.traceKeys))
	ctx, t.wait = tracewait.With(ctx)
	return r.WithContext(context.WithValue(ctx, httpTraceKey{}, t))
}

// traceEnd ends the span started by traceStart, from what logOutcome is told.
func (m *Middleware) traceEnd(r *http.Request, outcome string, status int, res dedupe.Result, err error) {
	if m.tracer == nil {
		return
	}
	ctx := r.Context()
	t, ok := ctx.Value(httpTraceKey{}).(*httpTrace)
	if !ok {
		return
	}
	data := dedupe.TraceDoEndData{
		Outcome:  httpOutcome(outcome, status),
		Attempts: res.Attempts,
		Status:   status,
		Wait:     t.wait.Wait(),
		Duration: time.Since(t.start),
		Err:      err,
	}
	if data.Outcome == dedupe.OutcomeReplayed {
		data.Source = res.Source
	}
	m.tracer.TraceDoEnd(ctx, data)
}

// httpOutcome maps the middleware's log outcomes to the tracers' vocabulary.
func httpOutcome(outcome string, status int) dedupe.Outcome {
	switch outcome {
	case "first":
		return dedupe.OutcomeExecuted
	case "replayed":
		return dedupe.OutcomeReplayed
	case "rolled_back":
		return dedupe.OutcomeRolledBack
	case "mismatch":
		return dedupe.OutcomeMismatch
	case "in_progress":
		return dedupe.OutcomeInProgress
	case "unavailable":
		return dedupe.OutcomeUnavailable
	case "invalid":
		return dedupe.OutcomeInvalid
	case "too_large":
		if status == http.StatusRequestEntityTooLarge { // the request, not the response
			return dedupe.OutcomeInvalid
		}
	}
	return dedupe.OutcomeError
}
