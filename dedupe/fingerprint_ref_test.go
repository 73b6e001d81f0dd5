package dedupe

// The encoding/json-based canonicalisation that canonicalJSON replaced, kept as the reference
// its output must equal (FuzzCanonicalMatchesReference).

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// canonicalJSON returns the canonical encoding of body if body is exactly one JSON value.
func refCanonicalJSON(body []byte) ([]byte, bool) {
	// Invalid UTF-8 would be decoded to U+FFFD, making different bodies look equal.
	if len(bytes.TrimSpace(body)) == 0 || !utf8.Valid(body) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out bytes.Buffer
	out.Grow(len(body))
	if err := refCanonValue(dec, &out); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false // trailing data after the value
	}
	return out.Bytes(), true
}

func refCanonValue(dec *json.Decoder, out *bytes.Buffer) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return refCanonObject(dec, out)
		case '[':
			return refCanonArray(dec, out)
		}
		return errors.New("unexpected delimiter")
	case string:
		refWriteString(out, v)
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

func refCanonObject(dec *json.Decoder, out *bytes.Buffer) error {
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
		if err := refCanonValue(dec, &val); err != nil {
			return err
		}
		members = append(members, member{key, val.Bytes()})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return err
	}
	// By folded name, stable: names equal under case folding keep their order.
	slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(refFold(a.key), refFold(b.key)) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		refWriteString(out, m.key)
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return nil
}

// refFold maps every rune to the smallest member of its simple-folding orbit, found by walking
// the whole orbit.
func refFold(s string) string {
	var b strings.Builder
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

func refCanonArray(dec *json.Decoder, out *bytes.Buffer) error {
	out.WriteByte('[')
	for first := true; dec.More(); first = false {
		if !first {
			out.WriteByte(',')
		}
		if err := refCanonValue(dec, out); err != nil {
			return err
		}
	}
	out.WriteByte(']')
	_, err := dec.Token() // ']'
	return err
}

// writeString writes s as a JSON string with a single escaping rule: the two characters JSON
// requires (" and \) and control characters are escaped, everything else is literal UTF-8.
func refWriteString(out *bytes.Buffer, s string) {
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
