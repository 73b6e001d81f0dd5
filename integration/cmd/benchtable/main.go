// Command benchtable runs the comparison (integration/bench) for a fixed time per cell and
// prints one Markdown table and the target ratios. `make bench` runs it. It uses
// DEDUPE_TEST_DATABASE_URL and database 15 of DEDUPE_TEST_REDIS_URL.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pgonce/pgonce/integration/bench"
	"github.com/pgonce/pgonce/internal/pgtest"
)

func main() {
	warmup := flag.Duration("warmup", time.Second, "warm-up per cell (not measured)")
	duration := flag.Duration("duration", 3*time.Second, "measured time per cell")
	levels := flag.String("clients", "1,8,32", "client counts")
	only := flag.String("only", "", "regexp: run only cases whose id matches")
	flag.Parse()
	if err := run(*warmup, *duration, *levels, *only); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(warmup, duration time.Duration, levels, only string) error {
	ctx := context.Background()
	pgURL, redisURL := os.Getenv(pgtest.EnvDatabaseURL), os.Getenv(pgtest.EnvRedisURL)
	if pgURL == "" || redisURL == "" {
		return fmt.Errorf("%s", pgtest.HowTo)
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
	env, drop, err := bench.Open(ctx, pgURL, redisURL)
	if err != nil {
		return err
	}
	defer drop()

	start := time.Now()
	results := map[string]bench.Measurement{} // id/clients -> result
	fmt.Println("| benchmark | clients | ops/s | p50 ms | p99 ms | 409s | duplicate effects | attempts/success | allocs/op |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, c := range bench.Cases() {
		if !match.MatchString(c.ID) {
			continue
		}
		for _, n := range clients {
			cell, err := bench.PrepareCell(ctx, env, c, n)
			if err != nil {
				return err
			}
			m, err := cell.Run(ctx, warmup, duration, 0)
			if err != nil {
				return err
			}
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
		ratio(fmt.Sprintf("dedupe core / plain, %d clients", n), "toolkit/"+strconv.Itoa(n), "plain/"+strconv.Itoa(n), 0.90)
	}
	for _, n := range clients {
		ns := strconv.Itoa(n)
		ratio("dedupe core / the same statements by hand (2b), "+ns+" clients", "toolkit/"+ns, "hand-key-response/"+ns, 0.90)
		ratio("replay / dedupe core, "+ns+" clients", "replay/"+ns, "toolkit/"+ns, 2)
		ratio("Redis replay / dedupe core, "+ns+" clients", "redis-replay/"+ns, "toolkit/"+ns, 5)
		ratio("dedupe core / Stripe-style, "+ns+" clients", "toolkit/"+ns, "stripe/"+ns, 1.5)
		ratio("optimistic helper / by hand, "+ns+" clients", "optimistic/"+ns, "optimistic-hand/"+ns, 0.90)
		ratio("FOR UPDATE helper / by hand, "+ns+" clients", "forupdate/"+ns, "forupdate-hand/"+ns, 0.90)
		ratio("guard check / bare INCR, "+ns+" clients", "guard-check/"+ns, "incr/"+ns, 0.90)
	}
	for _, id := range []string{"toolkit", "replay", "redis-replay", "redis-flushed"} {
		for _, n := range clients {
			if m, ok := results[fmt.Sprintf("%s/%d", id, n)]; ok && m.Dups != 0 {
				fmt.Printf("- DUPLICATES: %s at %d clients: %d\n", id, n, m.Dups)
			}
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
