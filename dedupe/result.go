package dedupe

import (
	"context"
	"fmt"
	"time"
)

// Source says where the response in a Result came from.
type Source int

const (
	// SourceExecuted: the function ran in this call and its response committed with the key.
	SourceExecuted Source = iota
	// SourcePostgres: the key was already committed; PostgreSQL replayed its stored response
	// and the function did not run.
	SourcePostgres
	// SourceRedis: the Redis guard (redisguard) replayed a cached response; neither the
	// function nor PostgreSQL ran.
	SourceRedis
)

// String returns the source's name as logged and traced: executed, postgres, redis.
func (s Source) String() string {
	switch s {
	case SourceExecuted:
		return "executed"
	case SourcePostgres:
		return "postgres"
	case SourceRedis:
		return "redis"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Result is what a successful Do returns.
type Result struct {
	// Response is the function's response (first execution) or the stored one (replay).
	Response Response
	// Source says who answered: the function, a replay from PostgreSQL, or one from Redis.
	Source Source
	// Attempts counts the transactions Do ran: 1, plus one per serialization or deadlock
	// retry; 0 when nothing reached PostgreSQL (a replay from Redis).
	Attempts int
	// ExpiresAt is when the key row expires and the key counts as new again, on this
	// process's clock and never later than the true expiry (the database reports the row's
	// remaining lifetime, added to the time the claim was sent). A cache of the response (the
	// Redis guard's) must not outlive it. In a joined transaction it holds only once the
	// caller's transaction commits.
	ExpiresAt time.Time
}

// Replayed reports whether the key was already committed: Response is the stored response
// (from PostgreSQL or the Redis guard) and the function did not run. It is derived from
// Source, so the two never disagree.
func (r Result) Replayed() bool { return r.Source != SourceExecuted }

// Runner runs one deduplicated request. *Deduper satisfies it, and so does a runner that puts
// the Redis guard in front of one (redisguard.Guard.Wrap); the HTTP middleware (dedupehttp)
// and the guard take any Runner.
type Runner interface {
	Do(ctx context.Context, db DB, req Request, fn Func) (Result, error)
}
