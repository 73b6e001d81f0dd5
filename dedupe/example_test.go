package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
)

// A client sends the same "create order" request twice (a retry after a timeout). The order is
// created once; the retry gets the stored response back.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE example_orders (id bigserial PRIMARY KEY, sku text NOT NULL)`); err != nil {
		log.Fatal(err)
	}

	d := dedupe.New(nil)
	body := []byte(`{"sku": "book-42"}`)
	req := dedupe.Request{
		Scope:       "orders.create",
		Key:         "5b1d3c1e-4c8e-4a53-9d0e-2f1c2b7a9e11", // the client's Idempotency-Key
		Fingerprint: dedupe.Fingerprint("POST", "/orders", body),
	}
	createOrder := func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO example_orders (sku) VALUES ($1) RETURNING id`, "book-42").Scan(&id); err != nil {
			return dedupe.Response{}, err // rolls back; the key stays free for a retry
		}
		return dedupe.Response{Status: 201, Body: fmt.Appendf(nil, `{"id":%d}`, id)}, nil
	}

	for range 2 {
		res, err := d.Do(ctx, pool, req, createOrder)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("replayed=%v status=%d body=%s\n", res.Replayed(), res.Response.Status, res.Response.Body)
	}

	var orders int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM example_orders`).Scan(&orders)
	fmt.Println("orders:", orders)
	// Output:
	// replayed=false status=201 body={"id":1}
	// replayed=true status=201 body={"id":1}
	// orders: 1
}

// The same key with a different payload is refused before the function runs.
func Example_fingerprintMismatch() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	d := dedupe.New(nil)
	ok := func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{Status: 200}, nil
	}
	first := dedupe.Request{Scope: "transfers", Key: "k-1", Fingerprint: dedupe.Fingerprint("POST", "/transfers", []byte(`{"amount":10}`))}
	if _, err := d.Do(ctx, pool, first, ok); err != nil {
		log.Fatal(err)
	}
	reused := first
	reused.Fingerprint = dedupe.Fingerprint("POST", "/transfers", []byte(`{"amount":1000}`))
	_, err = d.Do(ctx, pool, reused, ok)
	fmt.Println(errors.Is(err, dedupe.ErrFingerprintMismatch))
	// Output:
	// true
}
