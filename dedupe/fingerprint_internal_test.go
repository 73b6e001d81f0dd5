package dedupe

import (
	"bytes"
	"strings"
	"testing"
)

var canonSeeds = []string{
	`{"b":1,"a":[true,null,"x"]}`, `[1,2,{"z":{"y":0}}]`, `"\u0041\n\/"`, `{"a":1,"a":2}`, `{ "k" : 1.50e3 }`,
	`{"<":"&>"}`, `not json`, ``, `  `, `{"a":`, "\"\xff\"", `"\ud83d\ude00"`, `"\ud800"`, `"\ud800\u0041"`,
	`"\udc00\ud800"`, `-0`, `01`, `1.`, `.5`, `1e`, `1E+2`, `[1,]`, `{"a":1,}`, `{,}`, `"\x"`, "\"a\tb\"",
	`{"é":1,"e":2}`, "\ufeff{}", `[[[[[[[[[[]]]]]]]]]]`, `true false`, `nul`, `{"a" 1}`, `"\u00zz"`,
}

// The fast canonicaliser must agree with the encoding/json-based reference on every input:
// the same verdict (JSON or not) and the same canonical bytes, so fingerprints never change.
func FuzzCanonicalMatchesReference(f *testing.F) {
	for _, s := range canonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := canonicalJSON(body)
		if nesting(body) > maxDepth {
			// Deeper than maxDepth: not canonicalised, hashed as bytes by design.
			if ok {
				t.Fatalf("%q: nesting %d > maxDepth was canonicalised", body, nesting(body))
			}
			return
		}
		want, wantOK := refCanonicalJSON(body)
		if ok != wantOK || !bytes.Equal(got, want) {
			t.Fatalf("%q: fast (%v) %q, reference (%v) %q", body, ok, got, wantOK, want)
		}
	})
}

// nesting is the deepest bracket nesting in body, ignoring brackets inside strings.
func nesting(body []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range body {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == '[' || c == '{'):
			depth++
			deepest = max(deepest, depth)
		case !inString && (c == ']' || c == '}'):
			depth--
		}
	}
	return deepest
}

func TestCanonicalDeepNesting(t *testing.T) {
	ok := func(depth int) bool {
		_, ok := canonicalJSON([]byte(strings.Repeat("[", depth) + strings.Repeat("]", depth)))
		return ok
	}
	if !ok(maxDepth) || ok(maxDepth+2) {
		t.Fatalf("nesting up to maxDepth is JSON, deeper is hashed as bytes: %v %v", ok(maxDepth), ok(maxDepth+2))
	}
}

func BenchmarkFingerprint(b *testing.B) {
	body := []byte(`{"customer_id":"cust-17","sku":"book-42","quantity":2,"note":"leave at the door","tags":["gift","express"]}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Fingerprint("POST", "/orders", body)
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			refCanonicalJSON(body)
		}
	})
}
