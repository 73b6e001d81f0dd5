package integration_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
)

// The transaction Do opens (BEGIN pipelined with the claim) is pgx's own: large objects,
// nested transactions and batches work in it, on a pool and on a connection.
func TestOwnTransactionIsPgxs(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	d := dedupe.New(nil)
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	for name, h := range map[string]dedupe.DB{"pool": db.Pool, "conn": conn.Conn()} {
		var oid uint32
		res, err := d.Do(ctx, h, dedupe.Request{Scope: "lo", Key: name}, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			lo := tx.LargeObjects()
			var err error
			if oid, err = lo.Create(ctx, 0); err != nil {
				return dedupe.Response{}, err
			}
			obj, err := lo.Open(ctx, oid, pgx.LargeObjectModeWrite)
			if err != nil {
				return dedupe.Response{}, err
			}
			if _, err := obj.Write([]byte("hello")); err != nil {
				return dedupe.Response{}, err
			}
			if err := obj.Close(); err != nil {
				return dedupe.Response{}, err
			}
			// A nested transaction (a savepoint) that rolls back leaves the outer one usable.
			nested, err := tx.Begin(ctx)
			if err != nil {
				return dedupe.Response{}, err
			}
			if _, err := nested.Exec(ctx, `SELECT 1`); err != nil {
				return dedupe.Response{}, err
			}
			if err := nested.Rollback(ctx); err != nil {
				return dedupe.Response{}, err
			}
			return dedupe.Response{Status: 201}, nil
		})
		require.NoError(t, err, name)
		assert.False(t, res.Replayed(), name)
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT length(lo_get($1))`, oid).Scan(&n), name)
		assert.Equal(t, 5, n, "%s: the large object committed with the key", name)
		_, err = db.Pool.Exec(ctx, `SELECT lo_unlink($1)`, oid)
		require.NoError(t, err)
	}
}
