package dedupehttp_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
)

// quote renders key as an RFC 8941 sf-string.
func quote(key string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
}

// FuzzParseKey: ParseKey never panics; what it accepts is 1..MaxKeyLen bytes of printable
// ASCII, and quoting an accepted key and parsing it again gives the same key.
func FuzzParseKey(f *testing.F) {
	for _, seed := range []string{`abc`, `"abc"`, `"a\"b\\c"`, `""`, `"unterminated`, "tab\tkey", `"x"y`,
		"8e03978e-40d5-43e8-bc93-6894a57f9324", `"\u00e9"`, "\x00", strings.Repeat("k", 256)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set(dedupehttp.HeaderKey, v)
		key, err := dedupehttp.ParseKey(h)
		if err != nil {
			return
		}
		if key == "" || len(key) > dedupe.MaxKeyLen {
			t.Fatalf("accepted key of %d bytes", len(key))
		}
		for i := 0; i < len(key); i++ {
			if key[i] < 0x20 || key[i] > 0x7e {
				t.Fatalf("accepted byte 0x%02x", key[i])
			}
		}
		if err := dedupe.ValidateKey(key); err != nil {
			t.Fatalf("accepted a key the core refuses: %v", err)
		}
		h.Set(dedupehttp.HeaderKey, quote(key))
		again, err := dedupehttp.ParseKey(h)
		if err != nil || again != key {
			t.Fatalf("quoted round trip: %q -> %q, %v", key, again, err)
		}
	})
}
