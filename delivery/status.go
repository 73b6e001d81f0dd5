package delivery

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Class is what a delivery attempt's outcome means for the message.
type Class int

// Classes of outcomes.
const (
	// Delivered: a 2xx status. The message is done.
	Delivered Class = iota + 1
	// Retry: 408, 425, 429, any 5xx, or no status at all (a transport error or timeout: the
	// receiver may or may not have applied the message, so it is sent again with the same
	// key). Retried with backoff until MaxAttempts, then dead.
	Retry
	// Dead: any other status (other 4xx, 1xx, 3xx): the receiver refused the message and
	// sending it again will not change that. Dead messages stay listed (ListDead) until
	// re-driven (Redrive) or removed by River's retention.
	Dead
)

// String returns the class's name: delivered, retry, dead.
func (c Class) String() string {
	switch c {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Dead:
		return "dead"
	}
	return "unknown"
}

// Classify returns the class of an HTTP status; 0 stands for "no status" (a transport error).
func Classify(status int) Class {
	switch {
	case status >= 200 && status < 300:
		return Delivered
	case status == 0, status == http.StatusRequestTimeout, status == http.StatusTooEarly,
		status == http.StatusTooManyRequests, status >= 500 && status < 600:
		return Retry
	}
	return Dead
}

// StatusError is the error recorded for an attempt that got a status other than 2xx.
type StatusError struct {
	Status int
	// RetryAfter is the receiver's Retry-After, or 0.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("delivery: receiver answered %d %s", e.Status, http.StatusText(e.Status))
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (Retry-After %v)", e.RetryAfter)
	}
	return s
}

// parseRetryAfter reads a Retry-After header (RFC 9110 10.2.3): delay-seconds or an
// HTTP-date. It returns 0 when absent, malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(365*24*time.Hour/time.Second) {
			n = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
