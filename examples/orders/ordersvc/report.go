package ordersvc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/pessimistic"
)

// ReportResult says what one RunReport call did.
type ReportResult struct {
	Day time.Time
	// Outcome is "built" (this call built the report), "already built" (an earlier run did),
	// or "taken" (another instance is building it right now).
	Outcome                  string
	Orders, Units, Customers int
	// SummariesSent counts the customer summaries this call put in the outbox; a summary
	// already sent for (customer, day) is never sent again.
	SummariesSent int
}

func (r ReportResult) String() string {
	return fmt.Sprintf("report %s: %s (orders %d, units %d, customers %d); summaries sent by this run: %d",
		r.Day.Format(time.DateOnly), r.Outcome, r.Orders, r.Units, r.Customers, r.SummariesSent)
}

// RunReport builds the report for day (UTC) and sends each customer who ordered that day one
// summary. Any number of instances may call it at once for the same day: exactly one builds
// the report (pessimistic.RunOnce: a try-lock while building, a dedupe row once built), and the summary
// step is exactly-once per (customer, day) through its own dedupe key, so it is safe to run
// again after a crash part-way.
func (s *Service) RunReport(ctx context.Context, day time.Time) (ReportResult, error) {
	day = day.UTC().Truncate(24 * time.Hour)
	res := ReportResult{Day: day}
	outcome, err := s.runOnce(ctx, "orders.daily-report", day.Format(time.DateOnly), func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO daily_reports (day, orders, units, customers, built_by)
			SELECT $1::date, count(*), coalesce(sum(quantity), 0), count(DISTINCT customer_id), $2
			FROM orders WHERE created_at >= $1::date AND created_at < $1::date + 1`, day, s.instance)
		return err
	})
	if err != nil {
		return res, err
	}
	res.Outcome = outcome
	if outcome == "taken" {
		return res, nil // the instance building it sends the summaries
	}
	err = s.pool.QueryRow(ctx, `SELECT orders, units, customers FROM daily_reports WHERE day = $1`, day).
		Scan(&res.Orders, &res.Units, &res.Customers)
	if err != nil {
		return res, fmt.Errorf("read report: %w", err)
	}
	res.SummariesSent, err = s.sendSummaries(ctx, day)
	return res, err
}

// sendSummaries writes one outbox message per customer who ordered on day, each under the
// dedupe key (customer, day): a customer never gets two summaries for one day, however many
// instances or retries run this.
func (s *Service) sendSummaries(ctx context.Context, day time.Time) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT customer_id, count(*), sum(quantity) FROM orders
		WHERE created_at >= $1::date AND created_at < $1::date + 1 GROUP BY customer_id ORDER BY customer_id`, day)
	if err != nil {
		return 0, err
	}
	type summary struct {
		customer      string
		orders, units int
	}
	sums, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (summary, error) {
		var x summary
		return x, r.Scan(&x.customer, &x.orders, &x.units)
	})
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, sum := range sums {
		req := dedupe.Request{Scope: "orders.daily-summary", Key: sum.customer + "/" + day.Format(time.DateOnly), TTL: 90 * 24 * time.Hour}
		res, err := s.dedupe.Do(ctx, s.pool, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			body := fmt.Sprintf("On %s you placed %d orders for %d units.", day.Format(time.DateOnly), sum.orders, sum.units)
			_, err := tx.Exec(ctx, `INSERT INTO outbox (customer_id, kind, body) VALUES ($1, 'daily-summary', $2)`, sum.customer, body)
			return dedupe.Response{Status: 200}, err
		})
		if err != nil {
			return sent, err
		}
		if !res.Replayed() {
			sent++
		}
	}
	return sent, nil
}

// runOnce runs job for period at most once across all instances (pessimistic.RunOnce) and
// names the outcome.
func (s *Service) runOnce(ctx context.Context, job, period string, fn func(context.Context, pgx.Tx) error) (string, error) {
	outcome, err := pessimistic.RunOnce(ctx, s.pool, job, period, &pessimistic.RunOnceOptions{Deduper: s.dedupe}, fn)
	switch {
	case err != nil:
		return "", err
	case outcome == pessimistic.RunRunningElsewhere:
		return "taken", nil
	case outcome == pessimistic.RunAlreadyRan:
		return "already built", nil
	}
	return "built", nil
}

// StartBackground runs the periodic jobs until ctx ends or the returned stop function is
// called (which waits for them to finish): the report for yesterday every reportEvery, and
// the purge of expired idempotency keys every purgeEvery. A zero interval disables a job.
func (s *Service) StartBackground(ctx context.Context, reportEvery, purgeEvery time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	every := func(d time.Duration, job func(context.Context)) {
		if d <= 0 {
			return
		}
		wg.Go(func() {
			t := time.NewTicker(d)
			defer t.Stop()
			for {
				job(ctx)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	every(reportEvery, func(ctx context.Context) {
		res, err := s.RunReport(ctx, time.Now().UTC().AddDate(0, 0, -1))
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "daily report", "error", err)
			return
		}
		s.log.InfoContext(ctx, "daily report", "day", res.Day.Format(time.DateOnly), "outcome", res.Outcome, "summaries_sent", res.SummariesSent)
	})
	every(purgeEvery, func(ctx context.Context) {
		n, err := s.dedupe.Purge(ctx, s.pool, 0)
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "purge idempotency keys", "error", err)
			return
		}
		if n > 0 {
			s.log.InfoContext(ctx, "purged idempotency keys", "deleted", n)
		}
	})
	return func() { cancel(); wg.Wait() }
}
