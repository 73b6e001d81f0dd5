package delivery

import (
	"context"
	"time"
)

// Tracer is told of every delivery attempt, in the shape of pgx's QueryTracer:
// TraceAttemptStart may return a derived context (carrying a span), which the attempt's HTTP
// request carries and TraceAttemptEnd receives. Implementations must be safe for concurrent
// use. A nil Tracer costs nothing.
type Tracer interface {
	TraceAttemptStart(ctx context.Context, data TraceAttemptStartData) context.Context
	TraceAttemptEnd(ctx context.Context, data TraceAttemptEndData)
}

// TraceAttemptStartData describes an attempt as it begins. Fields may be added.
type TraceAttemptStartData struct {
	ID      int64 // the message (Enqueued.ID)
	Attempt int   // 1 for the first attempt; a re-drive continues the count
	URL     string
	// KeyHash identifies the message's key without revealing it (dedupe.KeyHash).
	KeyHash string
}

// TraceAttemptEndData describes how an attempt ended. Fields may be added.
type TraceAttemptEndData struct {
	// Class is the outcome; 0 when the attempt did not send (Held, or the Client stopping).
	Class Class
	// Held is true when the message waited for an earlier one with its ordering key.
	Held bool
	// Status is the receiver's HTTP status, 0 when none came.
	Status int
	// Final is true when the message will not be attempted again: delivered, or dead
	// (refused, or its last attempt failed).
	Final bool
	// Err is the transport error or *StatusError, nil when delivered.
	Err      error
	Duration time.Duration
}
