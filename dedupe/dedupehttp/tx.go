package dedupehttp

import (
	"context"

	"github.com/jackc/pgx/v5"
)

type txKey struct{}

// Tx returns the transaction the middleware runs the request in. The handler does all its
// database writes through it: they commit together with the idempotency key and the stored
// response, or not at all. ok is false when the request is not deduplicated (its method is not
// guarded, or the key is optional and absent); the handler then uses its pool as usual.
func Tx(ctx context.Context) (tx pgx.Tx, ok bool) {
	tx, ok = ctx.Value(txKey{}).(pgx.Tx)
	return tx, ok
}

func withTx(ctx context.Context, tx pgx.Tx) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

type keyKey struct{}

// Key returns the idempotency key of the request being served, as the middleware parsed it
// (so handlers need not parse the header again); ok is false when the request is not
// deduplicated.
func Key(ctx context.Context) (key string, ok bool) {
	key, ok = ctx.Value(keyKey{}).(string)
	return key, ok
}

func withKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyKey{}, key)
}
