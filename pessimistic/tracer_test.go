package pessimistic_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/pessimistic"
)

// spanRec records each traced call as its start and end data.
type spanRec struct {
	mu    sync.Mutex
	start []dedupe.TraceDoStartData
	end   []dedupe.TraceDoEndData
}

func (r *spanRec) TraceDoStart(ctx context.Context, d dedupe.TraceDoStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.start = append(r.start, d)
	return ctx
}

func (r *spanRec) TraceDoEnd(_ context.Context, d dedupe.TraceDoEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.end = append(r.end, d)
}

func (r *spanRec) outcomes() []dedupe.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []dedupe.Outcome
	for _, e := range r.end {
		out = append(out, e.Outcome)
	}
	return out
}

func TestRowLockTracer(t *testing.T) {
	ctx := context.Background()
	pool := openPool(ctx, `DROP TABLE IF EXISTS traced_rows;
		CREATE TABLE traced_rows (id text PRIMARY KEY);
		INSERT INTO traced_rows VALUES ('a'), ('b')`)
	defer pool.Close()
	table := pgx.Identifier{"traced_rows"}

	other, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer other.Rollback(ctx)
	require.NoError(t, pessimistic.RowLock{}.Row(ctx, other, table, "id", "a", nil))

	rec := &spanRec{}
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	lock := pessimistic.RowLock{Mode: pessimistic.NoWait, Tracer: rec}
	assert.NoError(t, lock.Row(ctx, tx, table, "id", "b", nil))
	assert.ErrorIs(t, lock.Row(ctx, tx, table, "id", "a", nil), pessimistic.ErrLockNotAvailable)
	assert.ErrorIs(t, lock.Row(ctx, tx, table, "", "a", nil), pessimistic.ErrInvalid)
	assert.NoError(t, lock.Query(ctx, tx, `SELECT id FROM traced_rows WHERE id = 'b'`, nil, func(pgx.Rows) error { return nil }))

	assert.Equal(t, []dedupe.Outcome{dedupe.OutcomeObtained, dedupe.OutcomeNotObtained, dedupe.OutcomeInvalid, dedupe.OutcomeObtained}, rec.outcomes())
	require.Len(t, rec.start, 4)
	for _, s := range rec.start {
		assert.Equal(t, dedupe.ComponentPessimistic, s.Component)
		assert.Equal(t, dedupe.OperationRowLock, s.Operation)
		assert.Empty(t, s.Key, "keys are hashed unless TraceKeys is set")
	}
	assert.Equal(t, dedupe.KeyHash(`"traced_rows" WHERE "id" = b`), rec.start[0].KeyHash)
	assert.Equal(t, dedupe.KeyHash("query"), rec.start[3].KeyHash)

	keyed := &spanRec{}
	require.NoError(t, pessimistic.RowLock{Tracer: keyed, TraceKeys: true}.Row(ctx, tx, table, "id", "b", nil))
	assert.Equal(t, `"traced_rows" WHERE "id" = b`, keyed.start[0].Key)
}

func TestRunOnceTracer(t *testing.T) {
	ctx := context.Background()
	pool := openPool(ctx, "")
	defer pool.Close()
	rec := &spanRec{}
	opts := &pessimistic.RunOnceOptions{Tracer: rec}
	run := func(context.Context, pgx.Tx) error { return nil }
	// A period of its own per run: the database outlives the test, and a period that already
	// ran would make every later run (-count=N) see RunAlreadyRan first.
	p1 := "p1-" + strconv.FormatInt(time.Now().UnixNano(), 36)

	// Held elsewhere: a transaction holds the run's advisory lock.
	holder, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, pessimistic.XactLock(ctx, holder, pessimistic.RunOnceKey("traced", p1)))
	out, err := pessimistic.RunOnce(ctx, pool, "traced", p1, opts, run)
	require.NoError(t, err)
	assert.Equal(t, pessimistic.RunRunningElsewhere, out)
	require.NoError(t, holder.Rollback(ctx))

	out, err = pessimistic.RunOnce(ctx, pool, "traced", p1, opts, run)
	require.NoError(t, err)
	assert.Equal(t, pessimistic.RunRan, out)
	out, err = pessimistic.RunOnce(ctx, pool, "traced", p1, opts, run)
	require.NoError(t, err)
	assert.Equal(t, pessimistic.RunAlreadyRan, out)
	_, err = pessimistic.RunOnce(ctx, pool, "", p1, opts, run)
	assert.ErrorIs(t, err, pessimistic.ErrInvalid)

	assert.Equal(t, []dedupe.Outcome{dedupe.OutcomeInProgress, dedupe.OutcomeExecuted, dedupe.OutcomeReplayed, dedupe.OutcomeInvalid}, rec.outcomes())
	assert.Equal(t, "job:traced", rec.start[0].Scope)
	assert.Equal(t, dedupe.OperationRunOnce, rec.start[0].Operation)
	assert.Equal(t, dedupe.KeyHash(p1), rec.start[0].KeyHash)
	assert.Equal(t, dedupe.SourcePostgres, rec.end[2].Source)
}
