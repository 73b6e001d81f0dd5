package bench

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// FlowSteps is the number of steps of the three-step request (the divisor of cost per step).
const FlowSteps = 3

// FlowCase is one peer of the three-step comparison.
type FlowCase struct {
	ID   string // short name, used in benchmark names
	Name string // label in the table
	Do   func(e *FlowEnv) Do
}

// FlowCases lists the peers in table order: the bare steps (the floor), flow, the statement shape proposed for flow
// written by hand (flowhand.go; a reference for what the proposal saves), DBOS in-process (the like-for-like peer:
// the request runs in the caller's process, as flow's does), DBOS through its queue
// (reported apart: a queued workflow waits for the queue runner's poll).
func FlowCases() []FlowCase {
	return []FlowCase{
		{ID: "bare", Name: "the three steps bare, no recovery (the floor)", Do: (*FlowEnv).BareDo},
		{ID: "flow", Name: "pgonce flow (Runner.Run)", Do: (*FlowEnv).FlowDo},
		{ID: "flow-hand", Name: "flow's tables, proposed statement shape, by hand (reference)", Do: (*FlowEnv).FlowHandDo},
		{ID: "dbos", Name: "DBOS in-process (RunWorkflow)", Do: (*FlowEnv).DBOSDo},
		{ID: "dbos-queue", Name: "DBOS queue (RunWorkflow WithQueue)", Do: (*FlowEnv).DBOSQueueDo},
	}
}

// FlowMeasurement is one cell's result.
type FlowMeasurement struct {
	Case    FlowCase
	Clients int
	Stats   Stats
	// RoundTrips and Statements are per request, counted by the pool's tracer over the
	// measured run (background statements of DBOS's queue runner included).
	RoundTrips, Statements float64
	// CPU is this process's user+system CPU time per request (client side: the Go code of
	// the peer, pgx, the HTTP client and the provider; not PostgreSQL's).
	CPU time.Duration
	// Calls is provider calls per request (1 when every request charged once).
	Calls float64
	// Detail is the tracer's per-statement table of the measured run, when its Detail is on.
	Detail map[string]*StmtStat
}

// PerStep is the time per request over FlowSteps at this cell's throughput, per client:
// clients / ops/s / steps.
func (m FlowMeasurement) PerStep() time.Duration {
	ops := m.Stats.OpsPerSec()
	if ops == 0 {
		return 0
	}
	return time.Duration(float64(m.Clients) / ops / FlowSteps * float64(time.Second))
}

// RunFlowCell resets the tables, runs c with clients clients for warmup (not measured) and
// then for duration, or for exactly n requests when n > 0, and checks that every request
// left one confirmed order.
func RunFlowCell(ctx context.Context, e *FlowEnv, c FlowCase, clients int, warmup, duration time.Duration, n int) (FlowMeasurement, error) {
	m := FlowMeasurement{Case: c, Clients: clients}
	if err := e.ResetFlow(ctx); err != nil {
		return m, err
	}
	keys := &Keys{Prefix: fmt.Sprintf("%s-%d-%d", c.ID, clients, time.Now().UnixNano())}
	do := c.Do(e)
	if warmup > 0 {
		Run(ctx, clients, 0, warmup, 0, keys, do)
	}
	e.Counter.TakeStats()
	rt0, st0 := e.Counter.Counts()
	calls0 := e.Calls()
	cpu0 := cpuTime()
	m.Stats = Run(ctx, clients, 0, duration, n, keys, do)
	cpu1 := cpuTime()
	rt1, st1 := e.Counter.Counts()
	m.Detail = e.Counter.TakeStats()
	if m.Stats.Errors > 0 {
		return m, fmt.Errorf("%s clients=%d: %d errors, first: %w", c.ID, clients, m.Stats.Errors, m.Stats.FirstErr)
	}
	if sends := float64(m.Stats.Sends); sends > 0 {
		m.RoundTrips = float64(rt1-rt0) / sends
		m.Statements = float64(st1-st0) / sends
		m.CPU = time.Duration(float64(cpu1-cpu0) / sends)
		m.Calls = float64(e.Calls()-calls0) / sends
	}
	unconfirmed, dups, err := e.CheckFlow(ctx)
	if err != nil {
		return m, err
	}
	return m, FlowCheckError(unconfirmed, dups)
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
