package dedupe

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on what a key row can hold. The same limits are CHECK constraints in the schema
// (migrations/0001_dedupe_keys.up.sql), so a row that breaks them can exist neither way.
const (
	MaxKeyLen         = 255 // bytes of UTF-8
	MaxScopeLen       = 512 // bytes of UTF-8
	MaxFingerprintLen = 64  // bytes; a SHA-256 fingerprint is 32
)

// Request names one logical request: the key a client sent, in a scope, with the fingerprint
// of the payload it came with.
type Request struct {
	// Scope is the namespace of the key: an operation ("orders.create"), a route plus method,
	// and/or a tenant. Keys in different scopes never meet. 1 to MaxScopeLen bytes of UTF-8,
	// no NUL.
	Scope string
	// Key is the client's idempotency key. 1 to MaxKeyLen bytes of UTF-8, no NUL.
	Key string
	// Fingerprint identifies the request payload (see Fingerprint). A later request with the
	// same key and a different fingerprint gets ErrFingerprintMismatch. Nil or empty means
	// "not fingerprinted": it matches only another empty fingerprint. At most
	// MaxFingerprintLen bytes.
	Fingerprint []byte
	// TTL overrides Options.TTL for this key when positive: how long the committed key is
	// remembered. After it, the key counts as new.
	TTL time.Duration
}

// Response is what the function returns and what a replay gets back, byte for byte.
type Response struct {
	// Status is the outcome code, typically an HTTP status; 0 to 999. A business refusal
	// (say 409 or 422) is a response like any other: committed and replayed.
	Status int
	// Header holds a few headers to replay (Content-Type, Location). It is assignable to and
	// from http.Header. Nil when there are none.
	Header map[string][]string
	// Body is replayed byte for byte.
	Body []byte
}

// Size is what a response counts against a limit on stored responses
// (Options.MaxResponseBytes): the body plus every header name and value, in bytes.
func (r Response) Size() int {
	n := len(r.Body)
	for k, vs := range r.Header {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return n
}

// ValidateKey reports whether key is usable as an idempotency key: 1 to MaxKeyLen bytes of
// valid UTF-8 without NUL. The error wraps ErrInvalidKey and says what is wrong.
func ValidateKey(key string) error {
	return validateText(ErrInvalidKey, "key", key, MaxKeyLen)
}

// ValidateScope reports whether scope is usable: 1 to MaxScopeLen bytes of valid UTF-8 without
// NUL. The error wraps ErrInvalidScope.
func ValidateScope(scope string) error {
	return validateText(ErrInvalidScope, "scope", scope, MaxScopeLen)
}

func validateText(sentinel error, what, s string, limit int) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is empty", sentinel, what)
	case len(s) > limit:
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", sentinel, what, len(s), limit)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", sentinel, what)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s contains a NUL byte", sentinel, what)
	}
	return nil
}

// Validate reports whether r is usable: scope and key as ValidateScope and ValidateKey say, a
// fingerprint of at most MaxFingerprintLen bytes, a TTL that is not negative. The error wraps
// ErrInvalidScope, ErrInvalidKey, ErrInvalidFingerprint or ErrInvalidTTL. Do and the Redis
// guard check it before any round trip.
func (r Request) Validate() error {
	if err := ValidateScope(r.Scope); err != nil {
		return err
	}
	if err := ValidateKey(r.Key); err != nil {
		return err
	}
	if len(r.Fingerprint) > MaxFingerprintLen {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidFingerprint, len(r.Fingerprint), MaxFingerprintLen)
	}
	if r.TTL < 0 {
		return fmt.Errorf("%w: %v is negative", ErrInvalidTTL, r.TTL)
	}
	return nil
}
