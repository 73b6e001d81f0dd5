package dedupe

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Fingerprint returns the SHA-256 of a canonical form of a request: its method, its path and
// its body. Two requests that differ only in the order of JSON object members, or in
// insignificant whitespace or string escapes, get the same fingerprint; any other difference
// gives a different one. Use the result as Request.Fingerprint.
//
// A body that is a single valid JSON value in valid UTF-8 is canonicalised: object members
// sorted by key (byte order; members with the same key keep their order, so duplicated keys
// still count), no whitespace, strings re-escaped one way, and numbers kept exactly as written
// (1 and 1.0 differ, since a server may read them differently). Any other body is hashed as
// bytes. Method and path are hashed as given; pass a canonical path (for query strings,
// url.Values.Encode sorts the keys).
func Fingerprint(method, path string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte("pgonce-fingerprint-v1"))
	writeField(h, []byte(method))
	writeField(h, []byte(path))
	if canon, ok := canonicalJSON(body); ok {
		h.Write([]byte{'j'})
		writeField(h, canon)
	} else {
		h.Write([]byte{'b'})
		writeField(h, body)
	}
	return h.Sum(nil)
}

// writeField writes a length-prefixed field, so that no two field sequences hash alike.
func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// canonicalJSON returns the canonical encoding of body if body is exactly one JSON value.
func canonicalJSON(body []byte) ([]byte, bool) {
	// Invalid UTF-8 would be decoded to U+FFFD, making different bodies look equal.
	if len(bytes.TrimSpace(body)) == 0 || !utf8.Valid(body) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out bytes.Buffer
	out.Grow(len(body))
	if err := canonValue(dec, &out); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false // trailing data after the value
	}
	return out.Bytes(), true
}

func canonValue(dec *json.Decoder, out *bytes.Buffer) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return canonObject(dec, out)
		case '[':
			return canonArray(dec, out)
		}
		return errors.New("unexpected delimiter")
	case string:
		writeString(out, v)
	case json.Number:
		out.WriteString(string(v))
	case bool:
		if v {
			out.WriteString("true")
		} else {
			out.WriteString("false")
		}
	case nil:
		out.WriteString("null")
	}
	return nil
}

func canonObject(dec *json.Decoder, out *bytes.Buffer) error {
	type member struct {
		key   string
		value []byte
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("object key is not a string")
		}
		var val bytes.Buffer
		if err := canonValue(dec, &val); err != nil {
			return err
		}
		members = append(members, member{key, val.Bytes()})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return err
	}
	slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		writeString(out, m.key)
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return nil
}

func canonArray(dec *json.Decoder, out *bytes.Buffer) error {
	out.WriteByte('[')
	for first := true; dec.More(); first = false {
		if !first {
			out.WriteByte(',')
		}
		if err := canonValue(dec, out); err != nil {
			return err
		}
	}
	out.WriteByte(']')
	_, err := dec.Token() // ']'
	return err
}

// writeString writes s as a JSON string with a single escaping rule: the two characters JSON
// requires (" and \) and control characters are escaped, everything else is literal UTF-8.
func writeString(out *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	out.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			out.WriteByte('\\')
			out.WriteByte(c)
		case c < 0x20:
			out.WriteString(`\u00`)
			out.WriteByte(hex[c>>4])
			out.WriteByte(hex[c&0xf])
		default:
			out.WriteByte(c)
		}
	}
	out.WriteByte('"')
}
