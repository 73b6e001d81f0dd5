package bench

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// StmtCounter is a pgx tracer that counts the round trips and statements a pool sends, and,
// when Detail is on, how many of each statement and the time each took from send to answer.
// Both peers of the flow comparison run on one pool carrying it, so their counts come from
// the same place. A round trip is one query or one batch (a batch's statements travel
// together); BEGIN and COMMIT are statements and round trips of their own.
type StmtCounter struct {
	roundTrips, statements atomic.Int64
	// Detail turns on the per-statement table (a mutex per statement: leave it off while
	// measuring throughput).
	Detail atomic.Bool

	mu    sync.Mutex
	stats map[string]*StmtStat
}

// StmtStat is one statement's count and total time.
type StmtStat struct {
	SQL   string
	Count int64
	Total time.Duration
}

type stmtStartKey struct{}

type stmtStart struct {
	sql string
	at  time.Time
}

// Counts returns the round trips and statements counted so far.
func (c *StmtCounter) Counts() (roundTrips, statements int64) {
	return c.roundTrips.Load(), c.statements.Load()
}

// TakeStats returns the per-statement table gathered since the last call and empties it.
func (c *StmtCounter) TakeStats() map[string]*StmtStat {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	c.stats = nil
	return s
}

// TraceQueryStart implements pgx.QueryTracer.
func (c *StmtCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.roundTrips.Add(1)
	c.statements.Add(1)
	if c.Detail.Load() {
		return context.WithValue(ctx, stmtStartKey{}, stmtStart{sql: data.SQL, at: time.Now()})
	}
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (c *StmtCounter) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if s, ok := ctx.Value(stmtStartKey{}).(stmtStart); ok {
		c.add(s.sql, time.Since(s.at))
	}
}

// TraceBatchStart implements pgx.BatchTracer: a batch is one round trip.
func (c *StmtCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.roundTrips.Add(1)
	if c.Detail.Load() {
		return context.WithValue(ctx, stmtStartKey{}, stmtStart{sql: "(batch)", at: time.Now()})
	}
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer: each statement of a batch.
func (c *StmtCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	c.statements.Add(1)
	if c.Detail.Load() {
		c.add("  in batch: "+data.SQL, 0)
	}
}

// TraceBatchEnd implements pgx.BatchTracer.
func (c *StmtCounter) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	if s, ok := ctx.Value(stmtStartKey{}).(stmtStart); ok {
		c.add(s.sql, time.Since(s.at))
	}
}

var spaces = regexp.MustCompile(`\s+`)

func (c *StmtCounter) add(sql string, d time.Duration) {
	sql = spaces.ReplaceAllString(strings.TrimSpace(sql), " ")
	if len(sql) > 110 {
		sql = sql[:110] + "…"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stats == nil {
		c.stats = map[string]*StmtStat{}
	}
	s := c.stats[sql]
	if s == nil {
		s = &StmtStat{SQL: sql}
		c.stats[sql] = s
	}
	s.Count++
	s.Total += d
}
