package dedupe_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pgonce/pgonce/dedupe"
)

// FuzzFingerprint checks the canonicalisation against encoding/json as an independent oracle:
//   - a JSON body and its re-encoding by encoding/json (members sorted, spacing and escapes
//     changed) fingerprint alike, unless the body has duplicate members (which decoding
//     into a map loses, a real semantic difference). Names count as duplicates when they
//     are equal under bytes.EqualFold, the equivalence the fingerprint folds names by (as
//     encoding/json matches them to struct fields): {"a":1,"A":0} and {"A":0,"a":1} decode
//     into a struct differently (the last one wins), so they must fingerprint apart;
//   - adding a member always changes the fingerprint;
//   - method and path are always part of the fingerprint.
func FuzzFingerprint(f *testing.F) {
	for _, seed := range []string{`{"b":1,"a":[true,null,"x"]}`, `[1,2,{"z":{"y":0}}]`, `"\u0041\n"`, `{"a":1,"a":2}`,
		`{ "k" : 1.50e3 }`, `{"<":"&>"}`, `not json`, ``, `{"a":`, "\"\xff\""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fp := dedupe.Fingerprint("POST", "/x", body)
		if len(fp) != 32 {
			t.Fatalf("fingerprint is %d bytes", len(fp))
		}
		if !bytes.Equal(fp, dedupe.Fingerprint("POST", "/x", bytes.Clone(body))) {
			t.Fatal("not deterministic")
		}
		if bytes.Equal(fp, dedupe.Fingerprint("PUT", "/x", body)) || bytes.Equal(fp, dedupe.Fingerprint("POST", "/y", body)) {
			t.Fatal("method or path ignored")
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		// encoding/json turns invalid UTF-8 into U+FFFD, a real change of the bytes, which
		// Fingerprint deliberately does not paper over: the oracle only holds for UTF-8.
		if !utf8.Valid(body) || dec.Decode(&v) != nil || dec.More() || !json.Valid(body) {
			return
		}
		obj, isObj := v.(map[string]any)
		if isObj {
			extended := map[string]any{}
			for k, x := range obj {
				extended[k] = x
			}
			extended["\x00fuzz-extra"] = true
			more, _ := json.Marshal(extended)
			if bytes.Equal(fp, dedupe.Fingerprint("POST", "/x", more)) {
				t.Fatalf("an added member did not change the fingerprint: %s", more)
			}
		}
		re, err := json.Marshal(v)
		if err != nil || hasDuplicateMembers(body) {
			return
		}
		if !bytes.Equal(fp, dedupe.Fingerprint("POST", "/x", re)) {
			t.Fatalf("equal JSON fingerprints differently:\n%s\n%s", body, re)
		}
	})
}

// hasDuplicateMembers reports whether any object in the JSON text repeats a member name, names
// compared with bytes.EqualFold.
func hasDuplicateMembers(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	dup, _ := scanDup(dec)
	return dup
}

// scanDup consumes one JSON value and reports whether an object inside it repeats a name.
func scanDup(dec *json.Decoder) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return false, nil
	}
	dup := false
	var seen []string
	for dec.More() {
		if delim == '{' {
			name, err := dec.Token()
			if err != nil {
				return dup, err
			}
			k, _ := name.(string)
			for _, s := range seen {
				dup = dup || strings.EqualFold(s, k)
			}
			seen = append(seen, k)
		}
		d, err := scanDup(dec)
		if err != nil {
			return dup, err
		}
		dup = dup || d
	}
	_, err = dec.Token() // closing delimiter
	return dup, err
}
