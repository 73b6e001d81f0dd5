package pessimistic_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/pessimistic"
)

// A scheduled job that every node starts: it runs once per period.
func ExampleRunOnce() {
	ctx := context.Background()
	pool := openPool(ctx, "")
	defer pool.Close()
	report := func(ctx context.Context, tx pgx.Tx) error {
		fmt.Println("building the report")
		return nil // its writes go through tx and commit with the record of the run
	}
	for range 2 {
		outcome, err := pessimistic.RunOnce(ctx, pool, "daily-report", "2026-11-22", nil, report)
		fmt.Println(outcome, err)
	}
	// Output:
	// building the report
	// ran <nil>
	// already_ran <nil>
}
