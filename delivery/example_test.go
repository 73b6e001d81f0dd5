package delivery_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/delivery"
)

// An order is confirmed and its notification enqueued in one transaction; the receiver
// deduplicates on the Idempotency-Key, so it applies the notification once however often it
// is delivered.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := delivery.Migrate(ctx, pool, nil); err != nil {
		log.Fatal(err)
	}

	// The receiver: dedupehttp over a handler that records the effect in its transaction.
	mw, err := dedupehttp.New(dedupehttp.Config{DB: pool})
	if err != nil {
		log.Fatal(err)
	}
	applied := make(chan string, 1)
	receiver := httptest.NewServer(mw.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, _ := dedupehttp.Key(r.Context())
		applied <- key
		w.WriteHeader(http.StatusNoContent)
	})))
	defer receiver.Close()

	client, err := delivery.New(pool, &delivery.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// ... the business write, say UPDATE orders SET state = 'confirmed' WHERE id = 42 ...
		return client.EnqueueTx(ctx, tx, delivery.Message{
			URL: receiver.URL, Key: "order-42-confirmed", Body: []byte(`{"order":42}`),
		})
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer client.Stop(ctx)
	fmt.Println("applied", <-applied)
	// Output:
	// applied order-42-confirmed
}
