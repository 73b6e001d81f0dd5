package dedupehttp

import (
	"context"
	"net/http"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/tracewait"
)

// httpTraceKey carries a traced request's *tracewait.Span in its context.
type httpTraceKey struct{}

// traceStart starts the span of a deduplicated request (key is "" when it is missing or
// malformed) and returns the request with the span's context.
func (m *Middleware) traceStart(r *http.Request, key string) *http.Request {
	ctx := m.tracer.TraceDoStart(r.Context(), dedupe.StartData(dedupe.ComponentHTTP, dedupe.OperationRequest, m.scope(r), key, m.traceKeys))
	ctx, span := tracewait.Start(ctx)
	return r.WithContext(context.WithValue(ctx, httpTraceKey{}, span))
}

// traceEnd ends the span started by traceStart, from what logOutcome is told.
func (m *Middleware) traceEnd(r *http.Request, outcome string, status int, res dedupe.Result, err error) {
	if m.tracer == nil {
		return
	}
	ctx := r.Context()
	span, ok := ctx.Value(httpTraceKey{}).(*tracewait.Span)
	if !ok {
		return
	}
	data := dedupe.TraceDoEndData{
		Outcome:  httpOutcome(outcome, status),
		Attempts: res.Attempts,
		Status:   status,
		Wait:     span.Wait(),
		Duration: span.Duration(),
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
