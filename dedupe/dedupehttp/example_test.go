package dedupehttp_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe/dedupehttp"
)

// The README's middleware example: a handler writes through the request's transaction, and a
// retry with the same Idempotency-Key gets the stored response back.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE example_http_orders (id bigserial PRIMARY KEY, body text NOT NULL)`); err != nil {
		log.Fatal(err)
	}

	mw, err := dedupehttp.New(dedupehttp.Config{DB: pool})
	if err != nil {
		log.Fatal(err)
	}
	createOrder := func(w http.ResponseWriter, r *http.Request) {
		tx, _ := dedupehttp.Tx(r.Context()) // commits with the key and the stored response
		key, _ := dedupehttp.Key(r.Context())
		var id int64
		if err := tx.QueryRow(r.Context(), `INSERT INTO example_http_orders (body) VALUES ('book-42') RETURNING id`).Scan(&id); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Println("handler ran for key", key)
		w.Header().Set("Location", fmt.Sprintf("/orders/%d", id))
		w.WriteHeader(http.StatusCreated)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /orders", mw.Required(http.HandlerFunc(createOrder)))

	for range 2 {
		r := httptest.NewRequest("POST", "/orders", strings.NewReader(`{"sku":"book-42"}`))
		r.Header.Set("Idempotency-Key", "7c1d")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Printf("%d %s replayed=%q\n", w.Code, w.Header().Get("Location"), w.Header().Get(dedupehttp.HeaderReplayed))
	}
	// Output:
	// handler ran for key 7c1d
	// 201 /orders/1 replayed=""
	// 201 /orders/1 replayed="true"
}
