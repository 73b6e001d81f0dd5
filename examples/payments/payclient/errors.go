package payclient

import (
	"errors"
	"fmt"
	"time"
)

// Outcomes callers branch on, with errors.Is. Each is carried by a typed error with details.
var (
	// ErrDeclined: the provider declined the card (402) and stored that answer with the key.
	// Definite: no charge was made and none will be for this key. *DeclinedError carries it.
	ErrDeclined = errors.New("payclient: card declined")
	// ErrRejected: the provider refused the request itself (a 4xx other than 402, 408, 409,
	// 425 and 429: bad input, a key reused with another body). Definite: nothing was charged;
	// retrying the same request cannot succeed. *RejectedError carries it.
	ErrRejected = errors.New("payclient: request rejected")
	// ErrIndeterminate: the charge may or may not have happened. Retry with the same key.
	// *IndeterminateError carries it.
	ErrIndeterminate = errors.New("payclient: outcome unknown; retry with the same idempotency key")
	// ErrNoKey: Charge was called without an idempotency key; nothing was sent.
	ErrNoKey = errors.New("payclient: idempotency key required")
)

// IsIndeterminate reports whether err leaves the charge's outcome unknown, so that the only
// safe next step is a retry with the same key.
func IsIndeterminate(err error) bool { return errors.Is(err, ErrIndeterminate) }

// DeclinedError is a definite decline: the provider's 402 body.
type DeclinedError struct {
	// Code is the decline code ("generic_decline", "insufficient_funds"); "" when the body
	// could not be read.
	Code string
	// Message is the provider's message.
	Message string
	// ID names the decline at the provider ("dc_...").
	ID string
	// Replayed is true when the provider replayed a stored decline (a retry).
	Replayed bool
}

func (e *DeclinedError) Error() string {
	if e.Code == "" {
		return ErrDeclined.Error()
	}
	return fmt.Sprintf("%s: %s", ErrDeclined, e.Code)
}

// Is makes errors.Is(err, ErrDeclined) true.
func (e *DeclinedError) Is(target error) bool { return target == ErrDeclined }

// RejectedError is a definite refusal of the request: its status and problem details.
type RejectedError struct {
	Status int
	// Type, Title and Detail come from an RFC 9457 body, when the provider sent one.
	Type, Title, Detail string
}

func (e *RejectedError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d", ErrRejected, e.Status)
	if e.Title != "" {
		s += ": " + e.Title
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// IndeterminateError is an outcome that may or may not have charged.
type IndeterminateError struct {
	// Status is the HTTP status received, 0 when no answer came (timeout, refused or dropped
	// connection, cancelled context).
	Status int
	// RetryAfter is the provider's Retry-After, 0 when absent.
	RetryAfter time.Duration
	// Err is the transport error or what was wrong with the answer; errors.Is(err,
	// context.DeadlineExceeded) and the like see through it.
	Err error
}

func (e *IndeterminateError) Error() string {
	switch {
	case e.Status != 0 && e.Err != nil:
		return fmt.Sprintf("%s: HTTP %d: %v", ErrIndeterminate, e.Status, e.Err)
	case e.Status != 0:
		return fmt.Sprintf("%s: HTTP %d", ErrIndeterminate, e.Status)
	}
	return fmt.Sprintf("%s: %v", ErrIndeterminate, e.Err)
}

// Is makes errors.Is(err, ErrIndeterminate) true.
func (e *IndeterminateError) Is(target error) bool { return target == ErrIndeterminate }

// Unwrap returns Err.
func (e *IndeterminateError) Unwrap() error { return e.Err }
