// Command benchflow runs the three-step request (local, foreign, local) through flow and
// through DBOS Transact for Go, side by side in one process, in interleaved rounds of a fixed
// time per cell, and prints one Markdown table, the ratios flow/DBOS and the cost per step.
// With -profile it also prints, per peer, every statement one request sends and the time it
// took. `make bench-flow` runs it. It uses DEDUPE_TEST_DATABASE_URL.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgonce/pgonce/integration/bench"
	"github.com/pgonce/pgonce/internal/pgtest"
)

func main() {
	warmup := flag.Duration("warmup", 300*time.Millisecond, "warm-up before each measured round (not measured)")
	duration := flag.Duration("duration", 2*time.Second, "measured time per cell and round")
	rounds := flag.Int("rounds", 3, "interleaved rounds per cell; the table shows each cell's median round")
	levels := flag.String("clients", "1,8,32", "client counts")
	only := flag.String("only", "", "regexp: run only peers whose id matches (bare, flow, flow-hand, dbos, dbos-queue)")
	poll := flag.Duration("queue-poll", 50*time.Millisecond, "DBOS queue base polling interval (DBOS default 1s), also the queued handle's result poll")
	queue := flag.Bool("queue", false, "also measure DBOS queue mode (its queue runner then polls every -queue-poll during every peer's cells)")
	profile := flag.Int("profile", 0, "after the table, run this many requests per peer at 1 client and print each statement's count and mean time per request")
	flag.Parse()
	if err := run(*warmup, *duration, *rounds, *levels, *only, *queue, *poll, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "benchflow:", err)
		os.Exit(1)
	}
}

func run(warmup, duration time.Duration, rounds int, levels, only string, queue bool, poll time.Duration, profile int) error {
	ctx := context.Background()
	pgURL := os.Getenv(pgtest.EnvDatabaseURL)
	if pgURL == "" {
		return fmt.Errorf("%s", pgtest.HowTo)
	}
	if rounds < 1 {
		return fmt.Errorf("-rounds must be at least 1")
	}
	var clients []int
	for _, f := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		clients = append(clients, n)
	}
	match := regexp.MustCompile(only)
	var cases []bench.FlowCase
	for _, c := range bench.FlowCases() {
		if match.MatchString(c.ID) && (queue || c.ID != "dbos-queue") {
			cases = append(cases, c)
		}
	}
	env, closeEnv, err := bench.OpenFlow(ctx, pgURL, bench.FlowOptions{Queue: queue, QueuePoll: poll})
	if err != nil {
		return err
	}
	defer closeEnv()

	// Interleaved as in cmd/benchtable: at one client count every peer runs once, then every
	// peer again; a drifting machine slows all peers of a round alike, and the median round
	// discards outliers.
	start := time.Now()
	samples := map[string][]bench.FlowMeasurement{}
	for _, n := range clients {
		for r := range rounds {
			fmt.Fprintf(os.Stderr, "benchflow: %d clients, round %d/%d (%s)\n", n, r+1, rounds, time.Since(start).Round(time.Second))
			for _, c := range cases {
				m, err := bench.RunFlowCell(ctx, env, c, n, warmup, duration, 0)
				if err != nil {
					return err
				}
				id := fmt.Sprintf("%s/%d", c.ID, n)
				samples[id] = append(samples[id], m)
			}
		}
	}
	results := map[string]bench.FlowMeasurement{}
	fmt.Println("| three-step request | clients | requests/s | range over rounds | p50 ms | p99 ms | µs per step | round trips per step | statements per step | client CPU µs per step | provider calls per request |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, c := range cases {
		for _, n := range clients {
			id := fmt.Sprintf("%s/%d", c.ID, n)
			m := median(samples[id])
			results[id] = m
			lo, hi := spread(samples[id])
			fmt.Printf("| %s | %d | %.0f | %.0f–%.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.0f | %.2f |\n", c.Name, n, m.Stats.OpsPerSec(), lo, hi,
				ms(m.Stats.P50), ms(m.Stats.P99), us(m.PerStep()), m.RoundTrips/bench.FlowSteps, m.Statements/bench.FlowSteps,
				us(m.CPU)/bench.FlowSteps, m.Calls)
		}
	}
	fmt.Printf("\nEach row: the round with the median requests/s of %d interleaved rounds of %v, after %v of warm-up each;\n"+
		"every request a new key. µs per step = clients ÷ requests/s ÷ %d steps (at 1 client: a request's time ÷ %d).\n"+
		"Round trips and statements: counted by a pgx tracer on the one pool both peers use (DBOS's background polls included).\n"+
		"DBOS queue mode measured: %v (base polling interval %v).\n", rounds, duration, warmup, bench.FlowSteps, bench.FlowSteps, queue, poll)
	fmt.Printf("\nRatios, side by side in this run (%s); target for flow / DBOS in-process: ahead on both:\n\n", time.Since(start).Round(time.Second))
	for _, n := range clients {
		f, okF := results[fmt.Sprintf("flow/%d", n)]
		d, okD := results[fmt.Sprintf("dbos/%d", n)]
		if !okF || !okD || d.Stats.OpsPerSec() == 0 || f.PerStep() == 0 {
			continue
		}
		thr := f.Stats.OpsPerSec() / d.Stats.OpsPerSec()
		step := float64(d.PerStep()) / float64(f.PerStep())
		fmt.Printf("- %d clients: throughput flow/DBOS %.2f (%s); cost per step DBOS/flow %.2f (%s); round trips per step %.2f vs %.2f\n",
			n, thr, verdict(thr), step, verdict(step), f.RoundTrips/bench.FlowSteps, d.RoundTrips/bench.FlowSteps)
	}
	for _, n := range clients {
		b, okB := results[fmt.Sprintf("bare/%d", n)]
		f, okF := results[fmt.Sprintf("flow/%d", n)]
		d, okD := results[fmt.Sprintf("dbos/%d", n)]
		if okB && okF && okD && b.PerStep() > 0 {
			fmt.Printf("- %d clients, overhead per step over the bare steps (µs): flow %.0f, DBOS %.0f\n",
				n, us(f.PerStep()-b.PerStep()), us(d.PerStep()-b.PerStep()))
		}
	}
	for _, n := range clients {
		f, okF := results[fmt.Sprintf("flow/%d", n)]
		h, okH := results[fmt.Sprintf("flow-hand/%d", n)]
		if okF && okH && f.Stats.OpsPerSec() > 0 {
			fmt.Printf("- %d clients, the proposed statement shape by hand / flow (no target): throughput %.2f, round trips per request %.1f vs %.1f\n",
				n, h.Stats.OpsPerSec()/f.Stats.OpsPerSec(), h.RoundTrips, f.RoundTrips)
		}
	}
	for _, n := range clients {
		f, okF := results[fmt.Sprintf("flow/%d", n)]
		q, okQ := results[fmt.Sprintf("dbos-queue/%d", n)]
		if okF && okQ && q.Stats.OpsPerSec() > 0 {
			fmt.Printf("- %d clients, DBOS queue mode (no target): throughput flow/DBOS queue %.2f\n", n, f.Stats.OpsPerSec()/q.Stats.OpsPerSec())
		}
	}
	if profile > 0 {
		return printProfile(ctx, env, cases, profile)
	}
	return nil
}

// printProfile runs n requests of each peer at 1 client with the tracer's detail on and prints
// each statement's count per request and mean time: where a request's round trips go.
func printProfile(ctx context.Context, env *bench.FlowEnv, cases []bench.FlowCase, n int) error {
	for _, c := range cases {
		env.Counter.Detail.Store(true)
		m, err := bench.RunFlowCell(ctx, env, c, 1, 0, 0, n)
		env.Counter.Detail.Store(false)
		if err != nil {
			return err
		}
		stats := m.Detail
		var rows []*bench.StmtStat
		var total time.Duration
		for _, s := range stats {
			rows = append(rows, s)
			total += s.Total
		}
		slices.SortFunc(rows, func(a, b *bench.StmtStat) int { return cmp.Compare(b.Total, a.Total) })
		fmt.Printf("\n%s, %d requests at 1 client: %.2f ms per request, of which %.2f ms waiting on PostgreSQL\n\n",
			c.Name, n, ms(m.Stats.Elapsed)/float64(m.Stats.Sends), ms(total)/float64(m.Stats.Sends))
		fmt.Println("| statement | per request | mean µs | µs per request |")
		fmt.Println("|---|--:|--:|--:|")
		for _, s := range rows {
			mean := time.Duration(0)
			if s.Count > 0 {
				mean = s.Total / time.Duration(s.Count)
			}
			fmt.Printf("| `%s` | %.2f | %.0f | %.0f |\n", strings.ReplaceAll(s.SQL, "|", `\|`), float64(s.Count)/float64(n), us(mean), us(s.Total)/float64(n))
		}
	}
	return nil
}

func verdict(r float64) string {
	if r >= 1 {
		return "ahead"
	}
	return "BEHIND"
}

// median returns the round with the median throughput.
func median(ms []bench.FlowMeasurement) bench.FlowMeasurement {
	sorted := slices.Clone(ms)
	slices.SortFunc(sorted, func(a, b bench.FlowMeasurement) int {
		return cmp.Compare(a.Stats.OpsPerSec(), b.Stats.OpsPerSec())
	})
	return sorted[len(sorted)/2]
}

// spread returns the lowest and highest throughput of the rounds.
func spread(ms []bench.FlowMeasurement) (lo, hi float64) {
	for i, m := range ms {
		ops := m.Stats.OpsPerSec()
		if i == 0 || ops < lo {
			lo = ops
		}
		if ops > hi {
			hi = ops
		}
	}
	return lo, hi
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
