package dedupehttp

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/pgonce/pgonce/dedupe"
)

// HeaderKey is the request header carrying the idempotency key (IETF HTTPAPI draft "The
// Idempotency-Key HTTP Header Field").
const HeaderKey = "Idempotency-Key"

// HeaderReplayed is set to "true" on responses replayed from a stored earlier execution.
const HeaderReplayed = "Idempotent-Replayed"

var (
	// ErrKeyMissing means the request has no Idempotency-Key header.
	ErrKeyMissing = errors.New("dedupehttp: Idempotency-Key header missing")
	// ErrKeyMalformed means the header is present but not a valid key.
	ErrKeyMalformed = errors.New("dedupehttp: Idempotency-Key header malformed")
)

// ParseKey returns the idempotency key of a request. It accepts the draft's form, a
// Structured Field string ("\"8e03978e-40d5\""), and, as many clients send it, a bare value
// of visible ASCII without quotes, backslashes or whitespace (8e03978e-40d5). Exactly one
// header line must be present, and the key must be 1 to dedupe.MaxKeyLen bytes. Errors wrap
// ErrKeyMissing or ErrKeyMalformed.
func ParseKey(h http.Header) (string, error) { return parseKeyIn(h, HeaderKey) }

// parseKeyIn is ParseKey on the header named name (Config.Header).
func parseKeyIn(h http.Header, name string) (string, error) {
	values := h.Values(name)
	switch len(values) {
	case 0:
		return "", ErrKeyMissing
	case 1:
	default:
		return "", fmt.Errorf("%w: %d header lines, expected one", ErrKeyMalformed, len(values))
	}
	v := strings.Trim(values[0], " \t")
	var key string
	if strings.HasPrefix(v, `"`) {
		var err error
		if key, err = parseSFString(v); err != nil {
			return "", err
		}
	} else {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				return "", fmt.Errorf("%w: byte 0x%02x at %d (quote the key as a structured-field string)", ErrKeyMalformed, c, i)
			}
		}
		key = v
	}
	if key == "" {
		return "", fmt.Errorf("%w: empty key", ErrKeyMalformed)
	}
	if len(key) > dedupe.MaxKeyLen {
		return "", fmt.Errorf("%w: key is %d bytes, the limit is %d", ErrKeyMalformed, len(key), dedupe.MaxKeyLen)
	}
	return key, nil
}

// parseSFString parses an RFC 8941 sf-string: DQUOTE *( %x20-21 / %x23-5B / %x5D-7E /
// "\" DQUOTE / "\\" ) DQUOTE, with nothing after the closing quote.
func parseSFString(v string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			i++
			if i >= len(v) || (v[i] != '"' && v[i] != '\\') {
				return "", fmt.Errorf("%w: bad escape in quoted key", ErrKeyMalformed)
			}
			b.WriteByte(v[i])
		case c == '"':
			if i != len(v)-1 {
				return "", fmt.Errorf("%w: data after the closing quote", ErrKeyMalformed)
			}
			return b.String(), nil
		case c < 0x20 || c > 0x7e:
			return "", fmt.Errorf("%w: byte 0x%02x in quoted key", ErrKeyMalformed, c)
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("%w: missing closing quote", ErrKeyMalformed)
}
