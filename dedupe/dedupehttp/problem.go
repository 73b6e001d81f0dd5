package dedupehttp

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Problem types (RFC 9457 "type" members) the middleware answers with, relative to
// Config.ProblemTypeBase. README.md documents each.
const (
	ProblemKeyMissing      = "idempotency-key-missing"     // 400
	ProblemKeyMalformed    = "idempotency-key-malformed"   // 400
	ProblemKeyMismatch     = "idempotency-key-mismatch"    // 422
	ProblemKeyInProgress   = "idempotency-key-in-progress" // 409
	ProblemRequestTooLarge = "request-too-large"           // 413
	ProblemBodyUnreadable  = "request-body-unreadable"     // 400
	ProblemUnavailable     = "idempotency-unavailable"     // 503
	ProblemInternal        = "internal-error"              // 500
)

// DefaultProblemTypeBase prefixes the problem types when Config.ProblemTypeBase is empty.
const DefaultProblemTypeBase = "https://pgonce.dev/problems/"

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// WriteProblem writes p as application/problem+json with p.Status. Handlers behind the
// middleware may use it for their own refusals, which are then stored and replayed.
func WriteProblem(w http.ResponseWriter, p Problem) {
	body, _ := json.Marshal(p) // a struct of strings and an int always marshals
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
}

func (m *Middleware) problem(w http.ResponseWriter, status int, typ, title, detail string) {
	WriteProblem(w, Problem{Type: m.problemBase + typ, Title: title, Status: status, Detail: detail})
}

func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}
