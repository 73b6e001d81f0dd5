package optimistic_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/optimistic"
)

// Take one unit of stock without holding a lock: read, change, write if nobody else wrote,
// and try again if somebody did.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	_, err = pool.Exec(ctx, `CREATE TABLE stock_items (sku text PRIMARY KEY, stock int NOT NULL, version bigint NOT NULL DEFAULT 1);
		INSERT INTO stock_items (sku, stock) VALUES ('book-42', 10)`)
	if err != nil {
		log.Fatal(err)
	}

	items := optimistic.Table{Name: pgx.Identifier{"stock_items"}, ID: "sku"}
	var newVersion int64
	attempts, err := optimistic.Retry(ctx, nil, func(ctx context.Context) error {
		var stock int
		version, err := items.Get(ctx, pool, "book-42", []string{"stock"}, &stock)
		if err != nil {
			return err
		}
		newVersion, err = items.Update(ctx, pool, "book-42", version, optimistic.Set{Column: "stock", Value: stock - 1})
		return err
	})
	fmt.Println(attempts, newVersion, err)

	// A client that read version 1 and sends it back with If-Match is told it is stale.
	h := http.Header{"If-Match": {optimistic.ETag(1)}}
	v, _ := optimistic.IfMatch(h)
	_, err = items.Update(ctx, pool, "book-42", v, optimistic.Set{Column: "stock", Value: 0})
	fmt.Println(errors.Is(err, optimistic.ErrStale), optimistic.HTTPStatus(err))
	// Output:
	// 1 2 <nil>
	// true 412
}
