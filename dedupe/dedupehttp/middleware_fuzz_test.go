package dedupehttp_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pgonce/pgonce/dedupe/dedupehttp"
)

// FuzzMiddleware feeds the middleware arbitrary methods, keys and bodies against the real
// database: it must never panic and never answer 500 itself (the handler here never fails),
// and every answer is one the middleware documents or the handler's.
func FuzzMiddleware(f *testing.F) {
	fx := newFixture(f, dedupehttp.Config{MaxBodyBytes: 256})
	for _, seed := range []struct{ method, key, body string }{
		{"POST", "k1", `{"a":1}`}, {"POST", "k1", `{"a":2}`}, {"PATCH", `"q"`, ``}, {"DELETE", "k", "x"},
		{"POST", "", "{}"}, {"POST", "a\x00", "{}"}, {"POST", "big", string(bytes.Repeat([]byte("x"), 300))},
		{"post", "lower", "{}"}, {"POST", "\"unterminated", "{}"},
	} {
		f.Add(seed.method, seed.key, []byte(seed.body))
	}
	allowed := map[int]bool{200: true, 201: true, 202: true, 400: true, 409: true, 413: true, 422: true}
	f.Fuzz(func(t *testing.T, method, key string, body []byte) {
		r, err := http.NewRequest(method, "/orders", bytes.NewReader(body))
		if err != nil {
			return // not a method net/http would ever hand a handler
		}
		if key != "" {
			r.Header[dedupehttp.HeaderKey] = []string{key}
		}
		w := httptest.NewRecorder()
		fx.mux.ServeHTTP(w, r)
		if !allowed[w.Code] && w.Code != http.StatusMethodNotAllowed && w.Code != http.StatusNotFound {
			t.Fatalf("%s with key %q and %d body bytes: status %d: %s", method, key, len(body), w.Code, w.Body)
		}
	})
}
