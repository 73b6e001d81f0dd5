package dedupehttp_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
)

// Hostile keys are refused with 400 before anything runs, and nothing they carry leaks into
// the response.
func TestHostileKeys(t *testing.T) {
	f := newFixture(t, dedupehttp.Config{})
	for name, key := range map[string]string{
		"empty (header present)": `""`,
		"limit + 1 bytes":        strings.Repeat("a", dedupe.MaxKeyLen+1),
		"NUL byte":               "a\x00b",
		"invalid UTF-8":          "a\xffb",
		"CRLF header injection":  "a\r\nX-Injected: 1",
		"LF header injection":    "a\nSet-Cookie: x=1",
		"quoted with injection":  "\"a\r\nX-Injected: 1\"",
		"list of two keys":       `"a", "b"`,
		"SQL in a bare key":      `k';DROP TABLE orders;--`,
	} {
		r := httptest.NewRequest("POST", "/orders", strings.NewReader(`{}`))
		r.Header[dedupehttp.HeaderKey] = []string{key} // bypass Set's canonicalisation
		w := httptest.NewRecorder()
		f.mux.ServeHTTP(w, r)
		assert.Equal(t, http.StatusBadRequest, w.Code, name)
		assert.Empty(t, w.Header().Get("X-Injected"), name)
		assert.Empty(t, w.Header().Get("Set-Cookie"), name)
	}
	assert.Zero(t, f.svc.calls.Load(), "no hostile key reached the handler")
	assert.Zero(t, f.orders(t))
	// Keys of 1 byte and exactly the limit are fine; a quoted SQL-looking key is just a key.
	for _, key := range []string{"k", strings.Repeat("a", dedupe.MaxKeyLen), `"k';DROP TABLE orders;--"`} {
		w := f.do("POST", "/orders", key, `{}`)
		require.Equal(t, http.StatusCreated, w.Code, key)
	}
	assert.Equal(t, 3, f.orders(t), "the orders table is still there, with three orders")
}
