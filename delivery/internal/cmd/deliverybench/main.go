// Command deliverybench prints the delivery module's comparison table: a business
// transaction alone and with each kind of outbox row, and delivery throughput to a no-op and
// to a dedupehttp receiver beside that receiver's own throughput. Cells run in interleaved
// rounds and the table shows each cell's median round. `make bench-delivery` runs it against
// DEDUPE_TEST_DATABASE_URL.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgonce/pgonce/delivery/internal/deliverybench"
	"github.com/pgonce/pgonce/internal/pgtest"
)

func main() {
	duration := flag.Duration("duration", time.Second, "measured time per transaction cell and round")
	rounds := flag.Int("rounds", 5, "interleaved rounds; the table shows each cell's median")
	levels := flag.String("clients", "1,8", "client counts of the transaction cells")
	messages := flag.Int("messages", 5000, "messages per delivery cell and round")
	only := flag.String("only", "", "regexp: run only cells whose id matches")
	flag.Parse()
	if err := run(*duration, *rounds, *levels, *messages, regexp.MustCompile(*only)); err != nil {
		fmt.Fprintln(os.Stderr, "deliverybench:", err)
		os.Exit(1)
	}
}

func run(d time.Duration, rounds int, levels string, messages int, only *regexp.Regexp) error {
	ctx := context.Background()
	base := os.Getenv(pgtest.EnvDatabaseURL)
	if base == "" {
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
	env, drop, err := deliverybench.Open(ctx, base, 48)
	if err != nil {
		return err
	}
	defer drop()
	// Every variant runs right after a run of its baseline, and its cost is the ratio of the
	// pair: on a shared machine whose speed drifts from second to second, a ratio of two
	// adjacent runs is far steadier than a ratio of two medians taken minutes apart.
	samples := map[string][]float64{} // id/clients -> tx/s (or msgs/s) per run
	costs := map[string][]float64{}   // id/clients -> baseline tx/s / variant tx/s, per pair
	runTx := func(c deliverybench.TxCase, n int) (float64, error) {
		if err := env.Reset(ctx); err != nil {
			return 0, err
		}
		v, err := env.RunTx(ctx, c, n, d)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", c.ID, err)
		}
		id := fmt.Sprintf("%s/%d", c.ID, n)
		samples[id] = append(samples[id], v)
		return v, nil
	}
	baselines := map[string]deliverybench.TxCase{}
	for _, c := range deliverybench.TxCases() {
		if c.Outbox == "" {
			baselines[c.ID] = c
		}
	}
	for r := range rounds {
		fmt.Fprintf(os.Stderr, "deliverybench: round %d/%d\n", r+1, rounds)
		for _, n := range clients {
			for _, c := range deliverybench.TxCases() {
				if c.Outbox == "" || !only.MatchString(c.ID) {
					continue
				}
				base, err := runTx(baselines[strings.SplitN(c.ID, "+", 2)[0]], n)
				if err != nil {
					return err
				}
				v, err := runTx(c, n)
				if err != nil {
					return err
				}
				id := fmt.Sprintf("%s/%d", c.ID, n)
				costs[id] = append(costs[id], base/v)
			}
		}
		for _, c := range deliverybench.DeliverCases() {
			if !only.MatchString(c.ID) {
				continue
			}
			v, err := env.RunDeliver(ctx, c, messages)
			if err != nil {
				return fmt.Errorf("%s: %w", c.ID, err)
			}
			samples[c.ID] = append(samples[c.ID], v)
		}
		if a, b := samples["dedupe"], samples["dedupe-direct"]; len(a) == r+1 && len(b) == r+1 {
			costs["dedupe"] = append(costs["dedupe"], a[r]/b[r]) // adjacent runs, as above
		}
	}
	med := map[string]float64{}
	for id, s := range samples {
		med[id] = median(s)
	}
	fmt.Println("| cell | clients | tx/s or msgs/s | cost: baseline ÷ this, paired runs |")
	fmt.Println("|---|--:|--:|--:|")
	for _, n := range clients {
		for _, c := range deliverybench.TxCases() {
			id := fmt.Sprintf("%s/%d", c.ID, n)
			if v, ok := med[id]; ok {
				cost := ""
				if s, ok := costs[id]; ok {
					cost = fmt.Sprintf("%.2f", median(s))
				}
				fmt.Printf("| %s | %d | %.0f | %s |\n", c.Name, n, v, cost)
			}
		}
	}
	for _, c := range deliverybench.DeliverCases() {
		if v, ok := med[c.ID]; ok {
			fmt.Printf("| %s | | %.0f | |\n", c.Name, v)
		}
	}
	fmt.Printf("\nMedians of %d interleaved rounds; transaction cells %v per run (each variant paired with a run of\n"+
		"its baseline just before it), delivery cells %d messages each.\n", rounds, d, messages)
	fmt.Println("\nTargets:")
	for _, n := range clients {
		for _, shape := range []string{"insert", "order"} {
			if s, ok := costs[fmt.Sprintf("%s+enqueue/%d", shape, n)]; ok {
				c, verdict := median(s), "met"
				if c > 1.15 {
					verdict = "SHORT"
				}
				fmt.Printf("- EnqueueTx cost on %s, %d clients: %.2f (target <= 1.15): %s\n", shape, n, c, verdict)
			}
		}
	}
	if v, ok := med["noop"]; ok {
		verdict := "met"
		if v < 5000 {
			verdict = "SHORT"
		}
		fmt.Printf("- delivery to a no-op receiver: %.0f msgs/s (target >= 5000): %s\n", v, verdict)
	}
	if s, ok := costs["dedupe"]; ok {
		r, verdict := median(s), "met"
		if r < 0.8 {
			verdict = "SHORT"
		}
		fmt.Printf("- delivery to dedupehttp / the receiver alone (paired per round): %.2f (target >= 0.80): %s\n", r, verdict)
	}
	return nil
}

func median(s []float64) float64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}
