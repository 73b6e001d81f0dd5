package integration_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/pessimistic"
)

func nextToken(t *testing.T, db *pgtest.DB) int64 {
	t.Helper()
	var tok int64
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT nextval('fence_tokens')`).Scan(&tok))
	return tok
}

// A holder with a newer token writes; a delayed holder with an older token is refused and the
// row is unchanged. Tokens come from a PostgreSQL sequence.
func TestFenceRefusesStaleToken(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE SEQUENCE fence_tokens; CREATE TABLE reports (day text PRIMARY KEY, body text NOT NULL, writer bigint NOT NULL)`)
	require.NoError(t, err)
	write := func(token int64, body string) error {
		return pessimistic.FencedWrite(ctx, db.Pool, "report:day-1", token, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO reports VALUES ('day-1', $1, $2) ON CONFLICT (day) DO UPDATE SET body = $1, writer = $2`, body, token)
			return err
		})
	}
	old := nextToken(t, db)   // the holder that will pause
	fresh := nextToken(t, db) // the holder that took over after its lease expired
	require.NoError(t, write(fresh, "fresh"))
	require.NoError(t, write(fresh, "fresh again"), "an equal token is admitted")

	err = write(old, "stale")
	require.ErrorIs(t, err, pessimistic.ErrStaleToken)
	var stale *pessimistic.StaleTokenError
	require.ErrorAs(t, err, &stale)
	assert.Equal(t, old, stale.Token)
	assert.Equal(t, fresh, stale.Current)

	var body string
	var writer int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT body, writer FROM reports WHERE day = 'day-1'`).Scan(&body, &writer))
	assert.Equal(t, "fresh again", body)
	assert.Equal(t, fresh, writer)
}

// Writers racing with tokens in any order: the recorded token only goes up, and the last
// successful writer holds the highest token among the successful ones.
func TestFenceConcurrentTokens(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, &pgtest.Options{MaxConns: 16})
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE counter (id int PRIMARY KEY, writer bigint NOT NULL, writes int NOT NULL);
		INSERT INTO counter VALUES (1, 0, 0);
		CREATE TABLE write_log (seq bigserial PRIMARY KEY, token bigint NOT NULL)`)
	require.NoError(t, err)
	pgtest.Warm(t, db.Pool, 16)
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var admitted []int64
	for tok := int64(1); tok <= 16; tok++ {
		wg.Go(func() {
			<-start
			err := pessimistic.FencedWrite(ctx, db.Pool, "counter", tok, func(ctx context.Context, tx pgx.Tx) error {
				// Fenced writers of one resource are serialised by the fence row lock, so
				// write_log's sequence order is their commit order.
				if _, err := tx.Exec(ctx, `UPDATE counter SET writer = $1, writes = writes + 1 WHERE id = 1`, tok); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO write_log (token) VALUES ($1)`, tok)
				return err
			})
			if err == nil {
				mu.Lock()
				admitted = append(admitted, tok)
				mu.Unlock()
			} else {
				assert.ErrorIs(t, err, pessimistic.ErrStaleToken)
			}
		})
	}
	close(start)
	wg.Wait()
	require.NotEmpty(t, admitted)
	var writer int64
	var writes int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT writer, writes FROM counter`).Scan(&writer, &writes))
	assert.Equal(t, len(admitted), writes, "only admitted writers wrote")
	assert.Equal(t, int64(16), writer, "the highest token always gets in and is never overwritten")
	rows, err := db.Pool.Query(ctx, `SELECT token FROM write_log ORDER BY seq`)
	require.NoError(t, err)
	logged, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	assert.ElementsMatch(t, admitted, logged)
	for i := 1; i < len(logged); i++ {
		assert.Greater(t, logged[i], logged[i-1], "admitted tokens rise in commit order")
	}
}

func TestFenceBadInput(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	noop := func(context.Context, pgx.Tx) error { return nil }
	for name, err := range map[string]error{
		"empty resource": pessimistic.FencedWrite(ctx, db.Pool, "", 1, noop),
		"long resource":  pessimistic.FencedWrite(ctx, db.Pool, strings.Repeat("r", pessimistic.MaxResourceLen+1), 1, noop),
		"zero token":     pessimistic.FencedWrite(ctx, db.Pool, "r", 0, noop),
		"NUL resource":   pessimistic.FencedWrite(ctx, db.Pool, "r\x00", 1, noop),
	} {
		assert.ErrorIs(t, err, pessimistic.ErrInvalidFence, name)
	}
	assert.ErrorIs(t, pessimistic.FencedWrite(ctx, db.Pool, "r", 1, nil), pessimistic.ErrNilFunc)
	assert.ErrorIs(t, pessimistic.FencedWrite(ctx, nil, "r", 1, noop), pessimistic.ErrNilDB)
	boom := errors.New("boom")
	assert.ErrorIs(t, pessimistic.FencedWrite(ctx, db.Pool, "r", 5, func(context.Context, pgx.Tx) error { return boom }), boom)
	assert.Zero(t, count(t, db.Pool, `SELECT count(*) FROM fences`), "a failed write records no token")
}
