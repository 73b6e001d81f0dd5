package optimistic_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/optimistic"
)

// Four buyers take five units each from the same row at the same time, without a lock: those
// who lose a race read again and retry, and no update is lost.
func ExampleRetry() {
	ctx := context.Background()
	pool := openExampleTable(ctx, `DROP TABLE IF EXISTS stock_items;
		CREATE TABLE stock_items (sku text PRIMARY KEY, stock int NOT NULL CHECK (stock >= 0), version bigint NOT NULL DEFAULT 1);
		INSERT INTO stock_items (sku, stock) VALUES ('book-42', 100)`)
	defer pool.Close()
	items := optimistic.Table{Name: pgx.Identifier{"stock_items"}, ID: "sku"}

	takeOne := func(ctx context.Context) error {
		var stock int
		version, err := items.Get(ctx, pool, "book-42", []string{"stock"}, &stock)
		if err != nil {
			return err
		}
		_, err = items.Update(ctx, pool, "book-42", version, optimistic.Set{Column: "stock", Value: stock - 1})
		return err // ErrStale: Retry calls takeOne again
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				if _, err := optimistic.Retry(ctx, &optimistic.RetryOptions{MaxAttempts: 50}, takeOne); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()

	var stock int
	version, err := items.Get(ctx, pool, "book-42", []string{"stock"}, &stock)
	fmt.Println(stock, version, err)
	// Output: 80 21 <nil>
}
