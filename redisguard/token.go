package redisguard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf8"
)

// TokenLen is the length of an issued token: 32 random bytes, base64url without padding.
const TokenLen = 43

// MaxTokenScopeLen bounds a token scope (bytes of UTF-8).
const MaxTokenScopeLen = 512

// TokenOptions configures Tokens; nil means defaults.
type TokenOptions struct {
	// Prefix starts every token key; default DefaultPrefix. Keys are
	// Prefix + "token:" + scope + ":" + token.
	Prefix string
}

// Tokens issues one-time tokens and consumes them atomically: of any number of concurrent
// Consume calls with one token, exactly one succeeds. Use them to make a form, a link or a
// client-side action usable once (a submit token), as a lighter alternative to an idempotency
// key when the server hands out the key. Safe for concurrent use.
//
// Tokens live only in Redis: if Redis loses one (failover before replication, restart,
// FLUSHALL) it becomes unknown, never reusable; if Redis loses the tombstone of a consumed
// token, the token is unknown too. A token is never accepted twice as long as Redis does not
// roll back to a state before the Consume, which asynchronous replication can do in a
// failover. Where a second use must be refused even then, also pass the token as the
// idempotency key of the write it authorises (dedupe), so PostgreSQL refuses it.
type Tokens struct {
	client Client
	prefix string
}

// NewTokens returns a Tokens using client. It makes no round trip.
func NewTokens(client Client, opts *TokenOptions) *Tokens {
	t := &Tokens{client: client, prefix: DefaultPrefix}
	if opts != nil && opts.Prefix != "" {
		t.prefix = opts.Prefix
	}
	return t
}

// Issue creates a token for scope, valid for ttl (millisecond resolution): 32 bytes from
// crypto/rand, URL-safe (base64url, TokenLen characters). Scopes separate uses (say
// "checkout:user-42"): a token is accepted only in the scope it was issued for.
//
// Cost: one round trip (SET NX PX).
func (t *Tokens) Issue(ctx context.Context, scope string, ttl time.Duration) (string, error) {
	if err := validateScope(scope); err != nil {
		return "", &TokenError{Scope: scope, Err: err}
	}
	if ttl < time.Millisecond {
		return "", &TokenError{Scope: scope, Err: fmt.Errorf("%w: token TTL %v is below 1ms", ErrInvalid, ttl)}
	}
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	ok, err := t.client.SetNX(ctx, t.key(scope, tok), "new", ttl).Result()
	if err != nil {
		return "", &TokenError{Scope: scope, Err: fmt.Errorf("redisguard: issue token: %w", err)}
	}
	if !ok { // 256 random bits collided: not in this universe, but never hand out a used token
		return "", &TokenError{Scope: scope, Err: fmt.Errorf("redisguard: issue token: random token already exists")}
	}
	return tok, nil
}

// Consume uses token once: it returns nil to exactly one caller, and to every other caller a
// *TokenError wrapping ErrTokenUsed (consumed before and not yet past its TTL) or
// ErrTokenUnknown (never issued for this scope, expired, or malformed). The check and the
// consumption are one step in Redis (token_consume.lua), so concurrent callers cannot both
// succeed.
//
// Cost: one round trip; none for a malformed token.
func (t *Tokens) Consume(ctx context.Context, scope, token string) error {
	if err := validateScope(scope); err != nil {
		return &TokenError{Scope: scope, Err: err}
	}
	if !wellFormedToken(token) {
		return &TokenError{Scope: scope, Err: ErrTokenUnknown}
	}
	n, err := tokenConsume.Run(ctx, t.client, []string{t.key(scope, token)}).Int()
	switch {
	case err != nil:
		return &TokenError{Scope: scope, Err: fmt.Errorf("redisguard: consume token: %w", err)}
	case n == 1:
		return nil
	case n == 2:
		return &TokenError{Scope: scope, Err: ErrTokenUsed}
	default:
		return &TokenError{Scope: scope, Err: ErrTokenUnknown}
	}
}

// key: the token has a fixed length and alphabet, so "scope:token" is unambiguous for any
// scope. Only one key per call, so a brace in scope (a hash tag) is harmless in a cluster.
func (t *Tokens) key(scope, token string) string {
	return t.prefix + "token:" + scope + ":" + token
}

func validateScope(scope string) error {
	switch {
	case scope == "":
		return fmt.Errorf("%w: empty scope", ErrInvalid)
	case len(scope) > MaxTokenScopeLen:
		return fmt.Errorf("%w: scope is %d bytes, the limit is %d", ErrInvalid, len(scope), MaxTokenScopeLen)
	case !utf8.ValidString(scope):
		return fmt.Errorf("%w: scope is not valid UTF-8", ErrInvalid)
	}
	return nil
}

func wellFormedToken(s string) bool {
	if len(s) != TokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
