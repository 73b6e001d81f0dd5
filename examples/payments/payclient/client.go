package payclient

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config configures a Client. BaseURL is required.
type Config struct {
	// BaseURL is the provider's address, such as "http://127.0.0.1:8090".
	BaseURL string
	// HTTPClient sends the requests; default a client of its own over a clone of
	// http.DefaultTransport.
	HTTPClient *http.Client
	// Timeout bounds each Charge call, on top of the caller's context; default
	// DefaultTimeout. A call that runs out of time is indeterminate.
	Timeout time.Duration
}

// DefaultTimeout is Config.Timeout's default.
const DefaultTimeout = 10 * time.Second

// maxBody bounds the answer read (the provider's answers are a few hundred bytes).
const maxBody = 1 << 20

// Client calls the provider. Safe for concurrent use.
type Client struct {
	charges string // URL of POST /charges
	hc      *http.Client
	timeout time.Duration
}

// New checks cfg and returns a Client; it does no I/O.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("payclient: Config.BaseURL %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("payclient: Config.Timeout is negative")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return &Client{
		charges: strings.TrimRight(u.String(), "/") + "/charges",
		hc:      hc,
		timeout: cmp.Or(cfg.Timeout, DefaultTimeout),
	}, nil
}

// ChargeRequest is what to charge.
type ChargeRequest struct {
	// Amount in minor units (cents), > 0.
	Amount int64 `json:"amount"`
	// Currency is a lower-case ISO 4217 code ("usd").
	Currency string `json:"currency"`
	// Card is the card token ("tok_...").
	Card string `json:"card"`
	// Reference is the caller's reference (its order), stored with the charge.
	Reference string `json:"reference"`
}

// Charge is a charge the provider made.
type Charge struct {
	ID        string    `json:"id"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	Reference string    `json:"reference"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	// Replayed is true when the provider answered from the key's stored answer: this call
	// was a retry of one that had already charged.
	Replayed bool `json:"-"`
}

// Charge sends one POST /charges with idempotencyKey and classifies the answer: the charge;
// a *DeclinedError (ErrDeclined) or *RejectedError (ErrRejected), both definite; or an
// *IndeterminateError (ErrIndeterminate), after which the caller must retry with the same
// key, since the charge may have happened. Cost: one HTTP round trip, bounded by ctx and
// Config.Timeout; it makes no retry of its own (see the package doc for net/http's).
func (c *Client) Charge(ctx context.Context, idempotencyKey string, req ChargeRequest) (Charge, error) {
	if idempotencyKey == "" {
		return Charge{}, ErrNoKey
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Charge{}, fmt.Errorf("payclient: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.charges, bytes.NewReader(body))
	if err != nil {
		return Charge{}, fmt.Errorf("payclient: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("Idempotency-Key", idempotencyKey)
	resp, err := c.hc.Do(hreq)
	if err != nil {
		// No answer: refused, reset, dropped (EOF) or timed out. The request may have been
		// processed in full; only a retry with the same key can tell.
		return Charge{}, &IndeterminateError{Err: err}
	}
	defer resp.Body.Close()
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return classify(resp, raw, readErr)
}

// classify turns an answer into the outcome Charge returns.
func classify(resp *http.Response, raw []byte, readErr error) (Charge, error) {
	replayed := resp.Header.Get("Idempotent-Replayed") == "true"
	st := resp.StatusCode
	switch {
	case st == http.StatusCreated || st == http.StatusOK:
		var ch Charge
		if readErr != nil {
			return Charge{}, &IndeterminateError{Status: st, Err: fmt.Errorf("charge made, answer cut off: %w", readErr)}
		}
		if err := json.Unmarshal(raw, &ch); err != nil || ch.ID == "" {
			return Charge{}, &IndeterminateError{Status: st, Err: fmt.Errorf("charge made, answer unreadable: %v", err)}
		}
		ch.Replayed = replayed
		return ch, nil
	case st == http.StatusPaymentRequired:
		// Definite whatever the body says: the provider committed the decline with the key.
		var d struct {
			Code    string `json:"decline_code"`
			Message string `json:"message"`
			ID      string `json:"id"`
		}
		_ = json.Unmarshal(raw, &d)
		return Charge{}, &DeclinedError{Code: d.Code, Message: d.Message, ID: d.ID, Replayed: replayed}
	case retryable(st):
		return Charge{}, &IndeterminateError{Status: st, RetryAfter: retryAfter(resp.Header.Get("Retry-After")), Err: readErr}
	case st >= 400 && st < 500:
		var p struct{ Type, Title, Detail string }
		_ = json.Unmarshal(raw, &p)
		return Charge{}, &RejectedError{Status: st, Type: p.Type, Title: p.Title, Detail: p.Detail}
	}
	// 5xx (a gateway may time out on a charge that committed behind it), 1xx, 3xx, other 2xx.
	return Charge{}, &IndeterminateError{Status: st, RetryAfter: retryAfter(resp.Header.Get("Retry-After")), Err: readErr}
}

// retryable reports the 4xx statuses that say "not now" rather than "never": 408 Request
// Timeout, 409 (the key's first request still running), 425 Too Early, 429 Too Many Requests.
func retryable(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return false
}

// retryAfter parses a Retry-After header in seconds or as an HTTP date; 0 when absent or bad.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}
