// Package dedupehttp is net/http middleware that makes handlers idempotent with the
// Idempotency-Key request header (IETF HTTPAPI draft "The Idempotency-Key HTTP Header Field"),
// on top of package dedupe.
//
// The wrapped handler runs inside the dedupe transaction: it takes the pgx.Tx from the request
// context with Tx, does its writes there, and writes its response as usual. The middleware
// records the status, selected headers and body, commits them together with the key, and
// answers a retry with the same key byte for byte, adding Idempotent-Replayed: true:
//
//	mw, err := dedupehttp.New(dedupehttp.Config{DB: pool})
//	mux.Handle("POST /orders", mw.Required(http.HandlerFunc(createOrder)))
//
//	func createOrder(w http.ResponseWriter, r *http.Request) {
//		tx, _ := dedupehttp.Tx(r.Context())
//		var id int64
//		if err := tx.QueryRow(r.Context(), `INSERT INTO orders ... RETURNING id`).Scan(&id); err != nil {
//			http.Error(w, "database error", 500) // a 5xx rolls back: the key stays free
//			return
//		}
//		w.Header().Set("Location", fmt.Sprintf("/orders/%d", id))
//		w.WriteHeader(http.StatusCreated)
//	}
//
// Statuses the middleware answers itself (400 missing or malformed key, 413 body too large,
// 422 key reused for another request, 409 first request still in progress) are RFC 9457
// problem+json documents; Middleware lists their types.
package dedupehttp
