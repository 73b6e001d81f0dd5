package paysvc

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// arrival is one request's fault decision, shared between the outer wrapper (which sees the
// answer after the idempotency layer) and the handler (which alone knows that it produced a
// first answer rather than a replay).
type arrival struct {
	d Decision
	// first is set by the handler when it produced an answer to commit; a replay never sets
	// it, so only first answers are dropped.
	first atomic.Bool
}

type arrivalKey struct{}

func arrivalFrom(ctx context.Context) *arrival {
	a, _ := ctx.Value(arrivalKey{}).(*arrival)
	if a == nil {
		return &arrival{}
	}
	return a
}

// faulty wraps a route: it draws the arrival's Decision, answers 503 at once when it says
// Fail, and otherwise serves next through a writer that delays or drops the answer.
func (s *Service) faulty(route string, counter *atomic.Uint64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := headerKey(r)
		a := &arrival{d: s.faults.decide(Attempt{Route: route, Key: key, N: counter.Add(1)})}
		if a.d.Fail {
			s.counts.failed.Add(1)
			s.log.InfoContext(r.Context(), "fault", "kind", "fail", "route", route, "key", key)
			w.Header().Set("Retry-After", "1")
			problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "Provider unavailable",
				"Nothing was done. Retry with the same Idempotency-Key.")
			return
		}
		if a.d.Delay == 0 && !a.d.Drop {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), arrivalKey{}, a)))
			return
		}
		fw := &faultWriter{ResponseWriter: w, gone: r.Context().Done(), a: a, s: s, route: route, key: key}
		next.ServeHTTP(fw, r.WithContext(context.WithValue(r.Context(), arrivalKey{}, a)))
	})
}

// faultWriter delays the answer and, for a first answer that committed, closes the
// connection instead of sending it.
type faultWriter struct {
	http.ResponseWriter
	gone       <-chan struct{} // the client went away (the request's context is done)
	a          *arrival
	s          *Service
	route, key string
	started    bool
	dropped    bool
}

func (w *faultWriter) WriteHeader(status int) {
	if w.started {
		return
	}
	w.started = true
	if d := w.a.d.Delay; d > 0 {
		w.s.counts.delayed.Add(1)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-w.gone:
			t.Stop()
		}
	}
	// The idempotency layer writes the handler's answer only after its transaction committed,
	// and answers >= 500 are never committed: closing here loses an answer whose effect is
	// durable, which is the case a client must not mistake for a failure.
	if w.a.d.Drop && w.a.first.Load() && status < 500 {
		conn, _, err := http.NewResponseController(w.ResponseWriter).Hijack()
		if err == nil {
			_ = conn.Close()
			w.dropped = true
			w.s.counts.dropped.Add(1)
			w.s.log.Info("fault", "kind", "drop", "route", w.route, "key", w.key, "status", status)
			return
		}
		// HTTP/2 cannot be hijacked: answer normally rather than pretend.
		w.s.log.Warn("fault: cannot drop the connection", "error", err)
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *faultWriter) Write(p []byte) (int, error) {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	if w.dropped {
		return 0, http.ErrHijacked
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *faultWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// headerKey is the Idempotency-Key header as sent, made storable (valid UTF-8, at most 255
// bytes); the idempotency layer validates it properly.
func headerKey(r *http.Request) string {
	k := strings.ToValidUTF8(r.Header.Get("Idempotency-Key"), "\uFFFD")
	k = strings.ReplaceAll(k, "\x00", "")
	for len(k) > 255 {
		_, size := utf8.DecodeLastRuneInString(k)
		k = k[:len(k)-size]
	}
	return k
}
