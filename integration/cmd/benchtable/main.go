// Command benchtable runs the comparison (integration/bench) in interleaved rounds of a fixed
// time per cell and prints one Markdown table, the target ratios and where the core's cost goes. `make bench` runs it. It uses
// DEDUPE_TEST_DATABASE_URL and database 15 of DEDUPE_TEST_REDIS_URL.
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
	duration := flag.Duration("duration", time.Second, "measured time per cell and round")
	rounds := flag.Int("rounds", 3, "interleaved rounds per cell; the table shows each cell's median round")
	levels := flag.String("clients", "1,8,32", "client counts")
	only := flag.String("only", "", "regexp: run only cases whose id matches")
	flag.Parse()
	if err := run(*warmup, *duration, *rounds, *levels, *only); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(warmup, duration time.Duration, rounds int, levels, only string) error {
	ctx := context.Background()
	pgURL, redisURL := os.Getenv(pgtest.EnvDatabaseURL), os.Getenv(pgtest.EnvRedisURL)
	if pgURL == "" || redisURL == "" {
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
	var cases []bench.Case
	for _, c := range bench.Cases() {
		if match.MatchString(c.ID) {
			cases = append(cases, c)
		}
	}
	env, drop, err := bench.Open(ctx, pgURL, redisURL)
	if err != nil {
		return err
	}
	defer drop()

	// Rounds are interleaved: at one client count, every case runs once, then every case
	// again, and so on. A machine whose speed drifts (a shared or throttled host) then
	// slows all cases of a round alike instead of whichever case ran at the wrong moment,
	// and the median round discards the outliers.
	start := time.Now()
	samples := map[string][]bench.Measurement{} // id/clients -> one per round
	for _, n := range clients {
		for r := range rounds {
			fmt.Fprintf(os.Stderr, "benchtable: %d clients, round %d/%d (%s)\n", n, r+1, rounds, time.Since(start).Round(time.Second))
			for _, c := range cases {
				cell, err := bench.PrepareCell(ctx, env, c, n)
				if err != nil {
					return err
				}
				m, err := cell.Run(ctx, warmup, duration, 0)
				if err != nil {
					return err
				}
				id := fmt.Sprintf("%s/%d", c.ID, n)
				samples[id] = append(samples[id], m)
			}
		}
	}
	results := map[string]bench.Measurement{} // id/clients -> median round
	fmt.Println("| benchmark | clients | ops/s | p50 ms | p99 ms | 409s | duplicate effects | attempts/success | allocs/op |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, c := range cases {
		for _, n := range clients {
			m := median(samples[fmt.Sprintf("%s/%d", c.ID, n)])
			results[fmt.Sprintf("%s/%d", c.ID, n)] = m
			dups, attempts := "", ""
			if c.Group == "create" {
				dups = strconv.Itoa(m.Dups)
			}
			if m.Attempts > 0 {
				attempts = fmt.Sprintf("%.2f", m.Attempts)
			}
			fmt.Printf("| %s | %d | %.0f | %.2f | %.2f | %d | %s | %s | %.0f |\n", c.Name, n, m.Stats.OpsPerSec(),
				ms(m.Stats.P50), ms(m.Stats.P99), m.Stats.InProgress, dups, attempts, m.Allocs)
		}
	}
	fmt.Printf("\nEach row: the round with the median ops/s (and its p50, p99, allocs) of %d interleaved rounds of %v,\n"+
		"after %v of warm-up each; duplicate effects (warm-ups included) and 409s are totals over all rounds.\n", rounds, duration, warmup)
	fmt.Printf("\nTargets (ratios of ops/s in this run; %s):\n\n", time.Since(start).Round(time.Second))
	ratio := func(label, a, b string, target float64) {
		ma, okA := results[a]
		mb, okB := results[b]
		if !okA || !okB || mb.Stats.OpsPerSec() == 0 {
			return
		}
		r := ma.Stats.OpsPerSec() / mb.Stats.OpsPerSec()
		verdict := "met"
		if r < target {
			verdict = "SHORT"
		}
		fmt.Printf("- %s: %.2f (target >= %.2f): %s\n", label, r, target, verdict)
	}
	for _, n := range clients {
		ns := strconv.Itoa(n)
		ratio("dedupe core / plain + key row by hand (2a), "+ns+" clients", "toolkit/"+ns, "hand-key/"+ns, 0.90)
		if n == 32 {
			ratio("dedupe core / plain, "+ns+" clients", "toolkit/"+ns, "plain/"+ns, 0.65)
		}
		replayTarget := 2.0
		if n == 8 {
			replayTarget = 3
		}
		ratio("replay / dedupe core, "+ns+" clients", "replay/"+ns, "toolkit/"+ns, replayTarget)
		ratio("order workload: dedupe core / plain, "+ns+" clients", "orders-toolkit/"+ns, "orders-plain/"+ns, 0.85)
		if n == 8 {
			ratio("order workload over a 0.5 ms link: dedupe core / plain, "+ns+" clients", "net-toolkit/"+ns, "net-plain/"+ns, 0.85)
		}
		ratio("Redis replay / dedupe core, "+ns+" clients", "redis-replay/"+ns, "toolkit/"+ns, 5)
		ratio("dedupe core / Stripe-style, "+ns+" clients", "toolkit/"+ns, "stripe/"+ns, 1.5)
		ratio("optimistic helper / by hand, "+ns+" clients", "optimistic/"+ns, "optimistic-hand/"+ns, 0.90)
		ratio("FOR UPDATE helper / by hand, "+ns+" clients", "forupdate/"+ns, "forupdate-hand/"+ns, 0.90)
		ratio("guard check / bare INCR, "+ns+" clients", "guard-check/"+ns, "incr/"+ns, 0.90)
	}
	fmt.Printf("\nWhere the core's cost goes (no target):\n\n")
	for _, n := range clients {
		ns := strconv.Itoa(n)
		info := func(label, a, b string) {
			if ma, okA := results[a]; okA {
				if mb, okB := results[b]; okB && mb.Stats.OpsPerSec() > 0 {
					fmt.Printf("- %s, %d clients: %.2f\n", label, n, ma.Stats.OpsPerSec()/mb.Stats.OpsPerSec())
				}
			}
		}
		info("key row by hand (2a) / plain", "hand-key/"+ns, "plain/"+ns)
		info("key row + response, pipelined to plain's round trips (2c) / the same in 5 round trips (2b)", "hand-pipelined/"+ns, "hand-key-response/"+ns)
		info("pipelined by hand (2c) / plain", "hand-pipelined/"+ns, "plain/"+ns)
		info("dedupe core / plain", "toolkit/"+ns, "plain/"+ns)
		info("claim-last by hand (2d) / dedupe core", "hand-claim-last/"+ns, "toolkit/"+ns)
		info("lock-first by hand (2f, the core's statements) / dedupe core", "hand-lock-first/"+ns, "toolkit/"+ns)
		info("lock-first by hand (2f) / insert-first pipelined by hand (2c)", "hand-lock-first/"+ns, "hand-pipelined/"+ns)
		info("order workload over a 0.5 ms link: dedupe core / plain", "net-toolkit/"+ns, "net-plain/"+ns)
	}
	for _, id := range []string{"toolkit", "replay", "redis-replay", "redis-flushed", "orders-toolkit", "net-toolkit", "hand-claim-last", "hand-lock-first"} {
		for _, n := range clients {
			if m, ok := results[fmt.Sprintf("%s/%d", id, n)]; ok && m.Dups != 0 {
				fmt.Printf("- DUPLICATES: %s at %d clients: %d\n", id, n, m.Dups)
			}
		}
	}
	return nil
}

// median returns the round with the median throughput, except that duplicate effects and
// 409s are summed over all rounds: any duplicate in any round must show.
func median(ms []bench.Measurement) bench.Measurement {
	sorted := slices.Clone(ms)
	slices.SortFunc(sorted, func(a, b bench.Measurement) int { return cmp.Compare(a.Stats.OpsPerSec(), b.Stats.OpsPerSec()) })
	m := sorted[len(sorted)/2]
	m.Dups, m.Stats.InProgress = 0, 0
	for _, r := range ms {
		m.Dups += r.Dups
		m.Stats.InProgress += r.Stats.InProgress
	}
	return m
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
