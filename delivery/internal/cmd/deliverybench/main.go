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
	rounds := flag.Int("rounds", 3, "interleaved rounds; the table shows each cell's median")
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
	samples := map[string][]float64{}
	for r := range rounds {
		fmt.Fprintf(os.Stderr, "deliverybench: round %d/%d\n", r+1, rounds)
		for _, n := range clients {
			for _, c := range deliverybench.TxCases() {
				if !only.MatchString(c.ID) {
					continue
				}
				if err := env.Reset(ctx); err != nil {
					return err
				}
				v, err := env.RunTx(ctx, c, n, d)
				if err != nil {
					return fmt.Errorf("%s: %w", c.ID, err)
				}
				id := fmt.Sprintf("%s/%d", c.ID, n)
				samples[id] = append(samples[id], v)
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
	}
	med := map[string]float64{}
	for id, s := range samples {
		s = slices.Clone(s)
		slices.Sort(s)
		med[id] = s[len(s)/2]
	}
	fmt.Println("| cell | clients | tx/s or msgs/s | vs. baseline |")
	fmt.Println("|---|--:|--:|--:|")
	for _, n := range clients {
		for _, c := range deliverybench.TxCases() {
			id := fmt.Sprintf("%s/%d", c.ID, n)
			if v, ok := med[id]; ok {
				base := med[fmt.Sprintf("%s/%d", strings.SplitN(c.ID, "+", 2)[0], n)]
				fmt.Printf("| %s | %d | %.0f | %s |\n", c.Name, n, v, ratio(v, base))
			}
		}
	}
	for _, c := range deliverybench.DeliverCases() {
		if v, ok := med[c.ID]; ok {
			fmt.Printf("| %s | | %.0f | |\n", c.Name, v)
		}
	}
	fmt.Printf("\nMedian of %d interleaved rounds; transaction cells %v each, delivery cells %d messages each.\n", rounds, d, messages)
	fmt.Println("\nTargets:")
	for _, n := range clients {
		for _, shape := range []string{"insert", "order"} {
			check(med, fmt.Sprintf("EnqueueTx overhead on %s, %d clients (baseline/with, target <= 1.15)", shape, n),
				fmt.Sprintf("%s/%d", shape, n), fmt.Sprintf("%s+enqueue/%d", shape, n), 1.15, true)
		}
	}
	if v, ok := med["noop"]; ok {
		verdict := "met"
		if v < 5000 {
			verdict = "SHORT"
		}
		fmt.Printf("- delivery to a no-op receiver: %.0f msgs/s (target >= 5000): %s\n", v, verdict)
	}
	check(med, "delivery to dedupehttp / the receiver alone (target >= 0.80)", "dedupe", "dedupe-direct", 0.80, false)
	return nil
}

func ratio(v, base float64) string {
	if base == 0 || v == base {
		return ""
	}
	return fmt.Sprintf("%.2fx slower", base/v)
}

// check prints a/b (or b/a when inverse: a cost ratio, lower is better) against target.
func check(med map[string]float64, label, a, b string, target float64, inverse bool) {
	va, okA := med[a]
	vb, okB := med[b]
	if !okA || !okB || va == 0 || vb == 0 {
		return
	}
	r, verdict := va/vb, "met"
	if inverse {
		if r > target {
			verdict = "SHORT"
		}
	} else if r < target {
		verdict = "SHORT"
	}
	fmt.Printf("- %s: %.2f: %s\n", label, r, verdict)
}
