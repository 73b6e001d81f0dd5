package paysvc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/examples/payments/paysvc"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// provider is one Service on its own schema, served over HTTP.
type provider struct {
	svc *paysvc.Service
	db  *pgtest.DB
	url string
	// hc opens a new connection per request, so that a dropped answer surfaces as an error
	// instead of being re-sent by net/http on a reused connection (see payclient's doc).
	hc *http.Client
}

func newProvider(t *testing.T, cfg paysvc.Config) *provider {
	t.Helper()
	db := pgtest.New(t, pgtest.URL(t), &pgtest.Options{MaxConns: 16})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, paysvc.Migrate(ctx, db.URL))
	cfg.DB = db.Pool
	svc, err := paysvc.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &provider{svc: svc, db: db, url: srv.URL,
		hc: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}}
}

// answer is one HTTP exchange's result.
type answer struct {
	status   int
	replayed bool
	ctype    string
	body     []byte
}

func (p *provider) post(t *testing.T, path, key string, body any) (answer, error) {
	t.Helper()
	return p.postWith(t, p.hc, path, key, body)
}

func (p *provider) postWith(t *testing.T, hc *http.Client, path, key string, body any) (answer, error) {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		raw, err = json.Marshal(body)
		require.NoError(t, err)
	}
	req, err := http.NewRequest(http.MethodPost, p.url+path, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true",
		ctype: resp.Header.Get("Content-Type"), body: b}, err
}

func (p *provider) get(t *testing.T, path string, out any) int {
	t.Helper()
	resp, err := p.hc.Get(p.url + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
	}
	return resp.StatusCode
}

func (p *provider) stats(t *testing.T) paysvc.Stats {
	t.Helper()
	st, err := paysvc.ReadStats(context.Background(), p.db.Pool)
	require.NoError(t, err)
	return st
}

func (p *provider) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, p.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func decode[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(a.body, &v), "body: %s", a.body)
	return v
}

// onArrival returns a Decide hook that applies d to the route's arrival number n only.
func onArrival(route string, n uint64, d paysvc.Decision) func(paysvc.Attempt) paysvc.Decision {
	return func(a paysvc.Attempt) paysvc.Decision {
		if a.Route == route && a.N == n {
			return d
		}
		return paysvc.Decision{}
	}
}

func charge(ref string) paysvc.ChargeRequest {
	return paysvc.ChargeRequest{Amount: 1999, Currency: "usd", Card: paysvc.CardOK, Reference: ref}
}
