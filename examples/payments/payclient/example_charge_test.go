package payclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/pgonce/pgonce/examples/payments/payclient"
)

// A caller branches on the three kinds of outcome. The stand-in provider here drops the
// first answer (after "charging"), then replays the charge: the caller retries the
// indeterminate outcome with the same key and gets the one charge that was made.
func ExampleClient_Charge() {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 { // charged, then the connection drops
			conn, _, _ := http.NewResponseController(w).Hijack()
			_ = conn.Close()
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"ch_1","amount":1999,"currency":"usd","reference":"order-42","status":"succeeded"}`)
	}))
	defer srv.Close()
	// A fresh connection per call, so that net/http does not re-send the dropped request
	// on its own before this example can show it.
	c, err := payclient.New(payclient.Config{BaseURL: srv.URL,
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}})
	if err != nil {
		panic(err)
	}
	req := payclient.ChargeRequest{Amount: 1999, Currency: "usd", Card: "tok_visa", Reference: "order-42"}
	for attempt := 1; attempt <= 5; attempt++ {
		ch, err := c.Charge(context.Background(), "order-42/charge", req)
		switch {
		case err == nil:
			fmt.Printf("attempt %d: charged %s (replayed: %v)\n", attempt, ch.ID, ch.Replayed)
			return
		case errors.Is(err, payclient.ErrDeclined):
			fmt.Printf("attempt %d: declined; release the stock\n", attempt)
			return
		case payclient.IsIndeterminate(err):
			fmt.Printf("attempt %d: outcome unknown; retry with the same key\n", attempt)
		default:
			fmt.Printf("attempt %d: refused: %v\n", attempt, err)
			return
		}
	}
	// Output:
	// attempt 1: outcome unknown; retry with the same key
	// attempt 2: charged ch_1 (replayed: true)
}
