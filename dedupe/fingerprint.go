package dedupe

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"slices"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Fingerprint returns the SHA-256 of a canonical form of a request: its method, its path and
// its body. Two requests that differ only in the order of JSON object members, or in
// insignificant whitespace or string escapes, get the same fingerprint; any other difference
// gives a different one. Use the result as Request.Fingerprint.
//
// A body that is a single valid JSON value in valid UTF-8 is canonicalised: object members
// sorted by name, compared as encoding/json matches names (case-insensitively, by Unicode
// simple folding), and members whose names are equal under that folding keep their order,
// since a Go server decoding the body lets the last of them win ({"qty":1,"Qty":7} and
// {"Qty":7,"qty":1} differ, while {"b":1,"a":2} and {"a":2,"b":1} do not), no whitespace, strings re-escaped one way, and numbers kept exactly as written
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

// canonicalJSON returns the canonical encoding of body if body is exactly one JSON value
// (RFC 8259, surrounded by optional whitespace) in valid UTF-8. It is a single pass over the
// bytes: object members are canonicalised into one scratch buffer and then emitted sorted,
// so a typical request body costs a handful of allocations. Its output equals that of the
// encoding/json-based reference in fingerprint_ref_test.go, which a fuzz target checks.
func canonicalJSON(body []byte) ([]byte, bool) {
	// Invalid UTF-8 would be decoded to U+FFFD, making different bodies look equal.
	if !utf8.Valid(body) {
		return nil, false
	}
	p := canonParser{in: body, folds: make([]byte, 0, 256)}
	p.skipSpace()
	if p.i == len(p.in) {
		return nil, false
	}
	out := make([]byte, 0, len(body))
	out, ok := p.value(out, 0)
	if p.skipSpace(); !ok || p.i != len(p.in) {
		return nil, false
	}
	return out, true
}

// maxDepth bounds nesting, so hostile bodies cannot drive the recursion deep; a body nested
// deeper is hashed as bytes. (The encoding/json Token API this replaced had no limit.)
const maxDepth = 10000

type canonParser struct {
	in []byte
	i  int
	// folds holds the folded member names of the objects being parsed, used as a stack: an
	// object appends its names' folds and truncates back when it is done, so nested objects
	// share one buffer.
	folds []byte
}

func (p *canonParser) skipSpace() {
	for p.i < len(p.in) {
		switch p.in[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// value appends the canonical form of the value at p.i to out.
func (p *canonParser) value(out []byte, depth int) ([]byte, bool) {
	if p.i >= len(p.in) || depth > maxDepth {
		return out, false
	}
	switch c := p.in[p.i]; {
	case c == '{':
		return p.object(out, depth+1)
	case c == '[':
		return p.array(out, depth+1)
	case c == '"':
		return p.str(out)
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(out)
	case c == 't':
		return p.literal(out, "true")
	case c == 'f':
		return p.literal(out, "false")
	case c == 'n':
		return p.literal(out, "null")
	}
	return out, false
}

func (p *canonParser) literal(out []byte, lit string) ([]byte, bool) {
	if len(p.in)-p.i < len(lit) || string(p.in[p.i:p.i+len(lit)]) != lit {
		return out, false
	}
	p.i += len(lit)
	return append(out, lit...), true
}

// number validates the JSON number grammar and copies the number as written.
func (p *canonParser) number(out []byte) ([]byte, bool) {
	start := p.i
	if p.in[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.in) && p.in[p.i] >= '0' && p.in[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.in) && p.in[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return out, false
	}
	if p.i < len(p.in) && p.in[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return out, false
		}
	}
	if p.i < len(p.in) && (p.in[p.i] == 'e' || p.in[p.i] == 'E') {
		p.i++
		if p.i < len(p.in) && (p.in[p.i] == '+' || p.in[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return out, false
		}
	}
	return append(out, p.in[start:p.i]...), true
}

// str decodes the string at p.i and appends it re-escaped canonically (writeString's rule).
func (p *canonParser) str(out []byte) ([]byte, bool) {
	decoded, ok := p.decodeString(nil)
	if !ok {
		return out, false
	}
	return appendString(out, decoded), true
}

// decodeString decodes the JSON string at p.i. When it has no escapes, the result aliases the
// input (no copy); otherwise it is appended to buf.
func (p *canonParser) decodeString(buf []byte) ([]byte, bool) {
	p.i++ // opening quote
	start := p.i
	for p.i < len(p.in) {
		c := p.in[p.i]
		if c == '"' {
			s := p.in[start:p.i]
			p.i++
			return s, true
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, false
		}
		p.i++
	}
	buf = append(buf, p.in[start:p.i]...)
	for p.i < len(p.in) {
		c := p.in[p.i]
		switch {
		case c == '"':
			p.i++
			return buf, true
		case c < 0x20:
			return nil, false
		case c != '\\':
			buf = append(buf, c)
			p.i++
			continue
		}
		p.i++ // backslash
		if p.i >= len(p.in) {
			return nil, false
		}
		e := p.in[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, false
			}
			if utf16.IsSurrogate(r) {
				// A valid pair decodes to one rune; a lone surrogate to U+FFFD, as
				// encoding/json does.
				r2 := rune(-1)
				if p.i+1 < len(p.in) && p.in[p.i] == '\\' && p.in[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					var ok2 bool
					if r2, ok2 = p.hex4(); !ok2 {
						return nil, false
					}
					if utf16.DecodeRune(r, r2) == utf8.RuneError {
						p.i = save // not a pair: the second escape is decoded on its own
						r2 = -1
					}
				}
				if r2 >= 0 {
					r = utf16.DecodeRune(r, r2)
				} else {
					r = utf8.RuneError
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return nil, false
		}
	}
	return nil, false
}

func (p *canonParser) hex4() (rune, bool) {
	if len(p.in)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.in[p.i : p.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

func (p *canonParser) array(out []byte, depth int) ([]byte, bool) {
	p.i++ // [
	out = append(out, '[')
	p.skipSpace()
	if p.i < len(p.in) && p.in[p.i] == ']' {
		p.i++
		return append(out, ']'), true
	}
	for {
		p.skipSpace()
		var ok bool
		if out, ok = p.value(out, depth); !ok {
			return out, false
		}
		p.skipSpace()
		if p.i >= len(p.in) {
			return out, false
		}
		switch p.in[p.i] {
		case ',':
			p.i++
			out = append(out, ',')
		case ']':
			p.i++
			return append(out, ']'), true
		default:
			return out, false
		}
	}
}

// member is one object member: its decoded name and the span of its canonical value in the
// object's scratch buffer.
type member struct {
	name       []byte
	fold       [2]int // span of the folded name (appendFolded) in canonParser.folds
	start, end int
}

func (p *canonParser) object(out []byte, depth int) ([]byte, bool) {
	p.i++ // {
	p.skipSpace()
	if p.i < len(p.in) && p.in[p.i] == '}' {
		p.i++
		return append(out, '{', '}'), true
	}
	var members []member
	var scratch []byte // canonical values, back to back
	for {
		p.skipSpace()
		if p.i >= len(p.in) || p.in[p.i] != '"' {
			return out, false
		}
		name, ok := p.decodeString(nil)
		if !ok {
			return out, false
		}
		p.skipSpace()
		if p.i >= len(p.in) || p.in[p.i] != ':' {
			return out, false
		}
		p.i++
		p.skipSpace()
		start := len(scratch)
		if scratch, ok = p.value(scratch, depth); !ok {
			return out, false
		}
		fstart := len(p.folds)
		p.folds = appendFolded(p.folds, name)
		members = append(members, member{name: name, fold: [2]int{fstart, len(p.folds)}, start: start, end: len(scratch)})
		p.skipSpace()
		if p.i >= len(p.in) {
			return out, false
		}
		if p.in[p.i] == ',' {
			p.i++
			continue
		}
		if p.in[p.i] != '}' {
			return out, false
		}
		p.i++
		break
	}
	// Sorted by folded name, stable: encoding/json matches member names to struct fields
	// case-insensitively and the last match wins, so names equal under folding keep the order
	// they came in ({"a":1,"A":7} and {"A":7,"a":1} decode differently, and must differ here).
	slices.SortStableFunc(members, func(a, b member) int {
		return bytes.Compare(p.folds[a.fold[0]:a.fold[1]], p.folds[b.fold[0]:b.fold[1]])
	})
	p.folds = p.folds[:members[0].fold[0]]
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, m.name)
		out = append(out, ':')
		out = append(out, scratch[m.start:m.end]...)
	}
	return append(out, '}'), true
}

// appendFolded appends name with every rune replaced by the smallest rune of its Unicode
// simple case-folding orbit (ASCII letters upper-cased), so two names fold to the same bytes
// exactly when bytes.EqualFold holds for them: the equivalence encoding/json matches names by.
func appendFolded(out, in []byte) []byte {
	for i := 0; i < len(in); {
		c := in[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		// The smallest rune of r's orbit: SimpleFold walks the orbit in increasing order and
		// wraps around to its smallest member.
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < r {
				r = f
				break
			}
		}
		out = utf8.AppendRune(out, r)
		i += n
	}
	return out
}

// appendString writes s as a JSON string with a single escaping rule: the two characters JSON
// requires (" and \) and control characters are escaped, everything else is literal UTF-8.
func appendString(out, s []byte) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}
