package integration_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
)

// Do stores and replays a response with headers in every pgx query exec mode, including the
// ones a transaction-pooling PgBouncer needs (exec, simple protocol), where pgx does not know
// the parameters' types.
func TestDoEveryQueryExecMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := harness.DB(t, nil)
			createOrders(t, db.Pool)
			cfg, err := pgxpool.ParseConfig(db.URL)
			require.NoError(t, err)
			cfg.ConnConfig.DefaultQueryExecMode = mode
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)

			d := dedupe.New(nil)
			req := dedupe.Request{Scope: "modes", Key: "k"}
			first, err := d.Do(ctx, pool, req, insertOrder(nil, "k"))
			require.NoError(t, err)
			require.NotEmpty(t, first.Response.Header)
			again, err := d.Do(ctx, pool, req, insertOrder(nil, "k"))
			require.NoError(t, err)
			assert.True(t, again.Replayed)
			assert.Equal(t, first.Response, again.Response)
		})
	}
}
