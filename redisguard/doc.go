// Package redisguard puts Redis in front of the dedupe core as an optional, advisory fast
// path: a guard that turns away and replays duplicates in one Redis round trip, one-time
// tokens, and lease locks with fencing tokens (on one Redis deployment or, Redlock-style, on
// a majority of independent nodes).
//
// Redis never decides correctness alone. A request the guard has not seen before still runs
// through dedupe.Deduper.Do, whose PostgreSQL unique index refuses a duplicate that Redis
// forgot (failover with asynchronous replication, restart, eviction, FLUSHALL); and a lock's
// fencing token is checked in PostgreSQL (pessimistic.Fence) so that a holder whose lease ran
// out cannot overwrite the next holder's work.
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
//		Addrs:                 []string{"127.0.0.1:6379"},
//		ContextTimeoutEnabled: true, // lets the guard's Timeout cut a hung call short
//	})
//	guard, err := redisguard.NewGuard(rdb, nil) // fail open by default
//	deduper := dedupe.New(nil)
//
//	res, err := guard.Do(ctx, deduper, pool, dedupe.Request{Scope: "orders.create", Key: key, Fingerprint: fp},
//		func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
//			return createOrder(ctx, tx, order)
//		})
//	// res and err are the dedupe core's: errors.Is(err, dedupe.ErrInProgress) for a
//	// duplicate still running, res.Replayed() for a replay, and res.Source ==
//	// dedupe.SourceRedis when PostgreSQL was not asked at all.
//
// guard.Wrap(deduper) is a dedupe.Runner, which the HTTP middleware (dedupehttp) takes. Every type here takes a Client,
// which redis.UniversalClient satisfies: a single node, Sentinel and Cluster all work, and
// keys used together by one script share a hash tag.
//
// Bad input (a nil client, an empty name, a non-positive TTL) is refused before any round
// trip with an error matching ErrInvalid, the same rule as in every pgonce package; there is
// no separate nil-client sentinel because nothing else here takes a handle.
package redisguard
