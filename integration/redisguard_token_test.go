package integration_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/redisguard"
)

// One token consumed by 32 goroutines at once: exactly one succeeds, the others learn it
// was used.
func TestTokenConsumedOnceConcurrently(t *testing.T) {
	t.Parallel()
	consumeOnce(t, sharedRedis(t), harness.Prefix(t), 32)
}

// Unknown, malformed, expired and other-scope tokens are ErrTokenUnknown; a *TokenError names
// the scope; tokens are URL-safe and carry their TTL in Redis.
func TestTokenUnknownAndExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := sharedRedis(t)
	prefix := harness.Prefix(t)
	tokens := redisguard.NewTokens(rdb, &redisguard.TokenOptions{Prefix: prefix})

	tok, err := tokens.Issue(ctx, "s", time.Minute)
	require.NoError(t, err)
	assert.Len(t, tok, redisguard.TokenLen)
	assert.Equal(t, -1, strings.IndexFunc(tok, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}), "URL-safe")
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	ttl, err := rdb.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 50*time.Second)

	other, err := tokens.Issue(ctx, "s", time.Minute)
	require.NoError(t, err)
	assert.NotEqual(t, tok, other)

	err = tokens.Consume(ctx, "other-scope", tok)
	require.ErrorIs(t, err, redisguard.ErrTokenUnknown)
	var terr *redisguard.TokenError
	require.ErrorAs(t, err, &terr)
	assert.Equal(t, "other-scope", terr.Scope)
	assert.NotContains(t, err.Error(), tok, "the token is a secret")

	require.ErrorIs(t, tokens.Consume(ctx, "s", strings.Repeat("A", redisguard.TokenLen)), redisguard.ErrTokenUnknown)
	require.ErrorIs(t, tokens.Consume(ctx, "s", "not a token"), redisguard.ErrTokenUnknown)
	require.ErrorIs(t, tokens.Consume(ctx, "", tok), redisguard.ErrInvalid)
	_, err = tokens.Issue(ctx, "s", 0)
	require.ErrorIs(t, err, redisguard.ErrInvalid)

	require.NoError(t, tokens.Consume(ctx, "s", tok), "the other-scope attempt did not use it up")
	require.ErrorIs(t, tokens.Consume(ctx, "s", tok), redisguard.ErrTokenUsed)

	short, err := tokens.Issue(ctx, "s", 100*time.Millisecond)
	require.NoError(t, err)
	time.Sleep(150 * time.Millisecond) // let it expire
	require.ErrorIs(t, tokens.Consume(ctx, "s", short), redisguard.ErrTokenUnknown)
}
