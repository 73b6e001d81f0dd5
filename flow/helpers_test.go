package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// shop is a three-step flow like the order service's: reserve (local), charge (a call to a
// fake provider that dedupes on the outbound key), confirm (local, finishes). It counts what
// each step did, and the provider counts charges per outbound key.
type shop struct {
	reserves, confirms, calls atomic.Int64

	mu      sync.Mutex
	charges map[string]int // outbound key -> charges made with it
	keys    []string       // every outbound key seen, in order

	// callFn, when set, replaces the provider's answer (return an error for an unknown outcome).
	callFn func(ctx context.Context, key string) error
	// pauseConfirm, when set, is closed by confirm after its write and waited on until resume.
	pauseConfirm chan struct{}
	resume       chan struct{}
}

func newShop() *shop { return &shop{charges: map[string]int{}} }

func (s *shop) flow() Flow {
	return Flow{Name: "shop", Steps: []Step{
		Local("reserve", func(ctx context.Context, tx pgx.Tx, st *State) ([]byte, error) {
			s.reserves.Add(1)
			var id int64
			if err := tx.QueryRow(ctx, `INSERT INTO orders (ref, state) VALUES ($1, 'reserved') RETURNING id`, st.Key).Scan(&id); err != nil {
				return nil, err
			}
			return json.Marshal(map[string]int64{"order": id})
		}),
		Foreign("charge", func(ctx context.Context, st *State) ([]byte, error) {
			s.calls.Add(1)
			key := st.OutboundKey("charge")
			s.mu.Lock()
			s.keys = append(s.keys, key)
			s.mu.Unlock()
			if s.callFn != nil {
				if err := s.callFn(ctx, key); err != nil {
					return nil, err
				}
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.charges[key] == 0 { // the provider dedupes on the key
				s.charges[key] = 1
			}
			return []byte(`{"charge":"ch_` + key[len(key)-6:] + `"}`), nil
		}),
		Local("confirm", func(ctx context.Context, tx pgx.Tx, st *State) ([]byte, error) {
			s.confirms.Add(1)
			order, ok := st.Output("reserve")
			if !ok {
				return nil, errors.New("no reserve output")
			}
			charge, ok := st.Output("charge")
			if !ok {
				return nil, errors.New("no charge output")
			}
			if _, err := tx.Exec(ctx, `UPDATE orders SET state = 'confirmed', confirmed_by = $2 WHERE ref = $1`, st.Key, st.Fence); err != nil {
				return nil, err
			}
			if s.pauseConfirm != nil {
				close(s.pauseConfirm)
				<-s.resume
			}
			body := fmt.Sprintf(`{"order":%s,"charge":%s}`, order, charge)
			return nil, Finish(dedupe.Response{Status: 201, Header: map[string][]string{"Content-Type": {"application/json"}}, Body: []byte(body)})
		}),
	}}
}

// testDB is a migrated schema with an orders table for the shop flow.
func testDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	db := pgtest.New(t, pgtest.URL(t), &pgtest.Options{MaxConns: 24})
	_, err := db.Pool.Exec(context.Background(), `CREATE TABLE orders (
		id bigserial PRIMARY KEY, ref text NOT NULL, state text NOT NULL, confirmed_by bigint)`)
	require.NoError(t, err)
	return db.Pool
}

func newRunner(t *testing.T, pool *pgxpool.Pool, s *shop, opts *Options) *Runner {
	t.Helper()
	r, err := New(pool, []Flow{s.flow()}, opts)
	require.NoError(t, err)
	return r
}

func req(key string) dedupe.Request {
	return dedupe.Request{Scope: "orders.create", Key: key, Fingerprint: []byte("fp-" + key)}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// waitLeaseOut waits until the request's lease has run out by the server's clock.
func waitLeaseOut(t *testing.T, pool *pgxpool.Pool, key string) {
	t.Helper()
	require.Eventually(t, func() bool {
		return count(t, pool, `SELECT count(*) FROM flow_requests WHERE key = $1 AND locked_until <= now()`, key) == 1
	}, 30*time.Second, 20*time.Millisecond)
}
