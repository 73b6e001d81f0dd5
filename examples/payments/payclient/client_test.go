package payclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/examples/payments/payclient"
)

var req = payclient.ChargeRequest{Amount: 1999, Currency: "usd", Card: "tok_visa", Reference: "order-1"}

const chargeBody = `{"id":"ch_1","amount":1999,"currency":"usd","reference":"order-1","status":"succeeded","created_at":"2026-11-26T08:00:00Z"}`

func newClient(t *testing.T, h http.Handler, timeout time.Duration) *payclient.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := payclient.New(payclient.Config{BaseURL: srv.URL, Timeout: timeout})
	require.NoError(t, err)
	return c
}

func answer(status int, header map[string]string, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

// outcome names what Charge returned, for the table.
func outcome(err error) string {
	switch {
	case err == nil:
		return "charged"
	case errors.Is(err, payclient.ErrDeclined):
		return "declined"
	case errors.Is(err, payclient.ErrRejected):
		return "rejected"
	case payclient.IsIndeterminate(err):
		return "indeterminate"
	}
	return "other: " + err.Error()
}

func TestChargeClassifiesAnswers(t *testing.T) {
	problem := `{"type":"https://pgonce.dev/problems/x","title":"Bad","status":400,"detail":"amount"}`
	for _, tc := range []struct {
		name   string
		status int
		header map[string]string
		body   string
		want   string
	}{
		{"201", 201, nil, chargeBody, "charged"},
		{"201 replayed", 201, map[string]string{"Idempotent-Replayed": "true"}, chargeBody, "charged"},
		{"200", 200, nil, chargeBody, "charged"},
		{"201 unreadable body", 201, nil, `{"id":`, "indeterminate"},
		{"201 without id", 201, nil, `{}`, "indeterminate"},
		{"402", 402, nil, `{"error":"card_declined","decline_code":"insufficient_funds","message":"m","id":"dc_1"}`, "declined"},
		{"402 replayed", 402, map[string]string{"Idempotent-Replayed": "true"}, `{"error":"card_declined","decline_code":"generic_decline"}`, "declined"},
		{"402 unreadable body", 402, nil, `<html>`, "declined"},
		{"400", 400, nil, problem, "rejected"},
		{"404", 404, nil, ``, "rejected"},
		{"413", 413, nil, ``, "rejected"},
		{"422 key reused", 422, nil, problem, "rejected"},
		{"408", 408, nil, ``, "indeterminate"},
		{"409 in progress", 409, map[string]string{"Retry-After": "3"}, problem, "indeterminate"},
		{"425", 425, nil, ``, "indeterminate"},
		{"429", 429, map[string]string{"Retry-After": "2"}, ``, "indeterminate"},
		{"500", 500, nil, problem, "indeterminate"},
		{"502", 502, nil, ``, "indeterminate"},
		{"503", 503, map[string]string{"Retry-After": "1"}, ``, "indeterminate"},
		{"504", 504, nil, ``, "indeterminate"},
		{"302", 302, nil, ``, "indeterminate"}, // no Location: not followed
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, answer(tc.status, tc.header, tc.body), 0)
			ch, err := c.Charge(context.Background(), "key-1", req)
			assert.Equal(t, tc.want, outcome(err), "err: %v", err)
			switch tc.want {
			case "charged":
				assert.Equal(t, "ch_1", ch.ID)
				assert.Equal(t, int64(1999), ch.Amount)
				assert.Equal(t, tc.header["Idempotent-Replayed"] == "true", ch.Replayed)
			case "declined":
				var d *payclient.DeclinedError
				require.ErrorAs(t, err, &d)
				assert.Equal(t, tc.header["Idempotent-Replayed"] == "true", d.Replayed)
			case "rejected":
				var r *payclient.RejectedError
				require.ErrorAs(t, err, &r)
				assert.Equal(t, tc.status, r.Status)
			case "indeterminate":
				var ie *payclient.IndeterminateError
				require.ErrorAs(t, err, &ie)
				assert.Equal(t, tc.status, ie.Status)
				if s := tc.header["Retry-After"]; s != "" {
					assert.Equal(t, s+"s", ie.RetryAfter.String())
				}
			}
			// Exactly one outcome: the categories never overlap.
			n := 0
			for _, target := range []error{payclient.ErrDeclined, payclient.ErrRejected, payclient.ErrIndeterminate} {
				if errors.Is(err, target) {
					n++
				}
			}
			assert.LessOrEqual(t, n, 1)
		})
	}
}

func TestChargeDeclineDetails(t *testing.T) {
	c := newClient(t, answer(402, nil, `{"error":"card_declined","decline_code":"insufficient_funds","message":"Your card was declined.","id":"dc_9"}`), 0)
	_, err := c.Charge(context.Background(), "key-1", req)
	var d *payclient.DeclinedError
	require.ErrorAs(t, err, &d)
	assert.Equal(t, "insufficient_funds", d.Code)
	assert.Equal(t, "dc_9", d.ID)
	assert.Contains(t, err.Error(), "insufficient_funds")
}

func TestChargeSendsKeyAndBody(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan payclient.ChargeRequest, 1)
	c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in payclient.ChargeRequest
		_ = json.NewDecoder(r.Body).Decode(&in)
		got <- r
		bodies <- in
		w.WriteHeader(201)
		_, _ = io.WriteString(w, chargeBody)
	}), 0)
	_, err := c.Charge(context.Background(), "order-1/charge", req)
	require.NoError(t, err)
	r := <-got
	assert.Equal(t, http.MethodPost, r.Method)
	assert.Equal(t, "/charges", r.URL.Path)
	assert.Equal(t, "order-1/charge", r.Header.Get("Idempotency-Key"))
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Equal(t, req, <-bodies)
}

func TestChargeWithoutKeySendsNothing(t *testing.T) {
	c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a request was sent")
	}), 0)
	_, err := c.Charge(context.Background(), "", req)
	require.ErrorIs(t, err, payclient.ErrNoKey)
	assert.False(t, payclient.IsIndeterminate(err))
}

// hijack closes the connection after reading the request: the client gets no answer at all.
func hijack(partial string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		if partial != "" {
			_, _ = buf.WriteString(partial)
			_ = buf.Flush()
		}
		_ = conn.Close()
	})
}

func TestChargeDroppedConnectionIsIndeterminate(t *testing.T) {
	c := newClient(t, hijack(""), 0)
	_, err := c.Charge(context.Background(), "key-1", req)
	var ie *payclient.IndeterminateError
	require.ErrorAs(t, err, &ie, "err: %v", err)
	assert.Zero(t, ie.Status)
	assert.ErrorIs(t, err, io.EOF)
}

func TestChargeCutOffAnswerIsIndeterminate(t *testing.T) {
	// Headers of a 201 arrive, the body is cut off: the charge was made, its id is unknown.
	c := newClient(t, hijack("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\":\"ch_"), 0)
	_, err := c.Charge(context.Background(), "key-1", req)
	var ie *payclient.IndeterminateError
	require.ErrorAs(t, err, &ie, "err: %v", err)
	assert.Equal(t, 201, ie.Status)
}

func TestChargeConnectionRefusedIsIndeterminate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c, err := payclient.New(payclient.Config{BaseURL: "http://" + addr})
	require.NoError(t, err)
	_, err = c.Charge(context.Background(), "key-1", req)
	assert.True(t, payclient.IsIndeterminate(err), "err: %v", err)
}

// stall answers only when the client has gone away (or the test ends).
func stall(done <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
}

func TestChargeTimeoutIsIndeterminate(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	c := newClient(t, stall(done), 100*time.Millisecond)
	start := time.Now()
	_, err := c.Charge(context.Background(), "key-1", req)
	assert.True(t, payclient.IsIndeterminate(err), "err: %v", err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 30*time.Second)
}

func TestChargeHonoursCancellation(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	arrived := make(chan struct{})
	c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		stall(done).ServeHTTP(w, r)
	}), time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	_, err := c.Charge(ctx, "key-1", req)
	assert.True(t, payclient.IsIndeterminate(err), "a cancelled call may have charged: err: %v", err)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestNewValidates(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8090", "ftp://x", "http://"} {
		_, err := payclient.New(payclient.Config{BaseURL: u})
		assert.Error(t, err, u)
	}
	_, err := payclient.New(payclient.Config{BaseURL: "http://x", Timeout: -1})
	assert.Error(t, err)
	_, err = payclient.New(payclient.Config{BaseURL: "http://127.0.0.1:8090/"})
	assert.NoError(t, err)
}
