package migrations_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/migrations"
)

// A service migrates at start-up through its own pool. A second Up (another instance
// starting) finds nothing to do, and Validate is what a health check calls.
func ExampleMigrator() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	m, err := migrations.New(pool, nil) // nil: the connection's current schema
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		res, err := m.Up(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("from %d to %d, %d steps\n", res.From, res.To, len(res.Steps))
		for _, s := range res.Steps {
			fmt.Printf("  applied %04d_%s\n", s.Version, s.Name)
		}
	}
	fmt.Println("valid:", m.Validate(ctx) == nil)
	// Output:
	// from 0 to 7, 7 steps
	//   applied 0001_dedupe_keys
	//   applied 0002_fences
	//   applied 0003_flow
	//   applied 0004_dedupe_generations
	//   applied 0005_one_check_constraint
	//   applied 0006_dedupe_gen_lock_first
	//   applied 0007_dedupe_gen_fast_claim
	// from 7 to 7, 0 steps
	// valid: true
}
