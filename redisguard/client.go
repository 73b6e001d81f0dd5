package redisguard

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client is the part of a go-redis client this package uses: scripts (EVALSHA with a fallback
// to EVAL) and SET NX. redis.UniversalClient satisfies it, so *redis.Client, a Sentinel-backed
// failover client and *redis.ClusterClient all work.
//
// Timeouts in this package are applied through the context. go-redis honours a context
// deadline on a hung connection only when the client is created with ContextTimeoutEnabled:
// true; otherwise a call to a server that stopped answering waits for the client's
// ReadTimeout (5s by default) whatever the context says. Create clients for this package
// with ContextTimeoutEnabled: true.
type Client interface {
	redis.Scripter
	SetNX(ctx context.Context, key string, value any, expiration time.Duration) *redis.BoolCmd
}

var _ Client = redis.UniversalClient(nil)
