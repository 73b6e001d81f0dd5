package paysvc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/examples/payments/paysvc"
	"github.com/pgonce/pgonce/internal/pgtest"
)

var queryModes = []struct {
	name string
	mode pgx.QueryExecMode
}{
	{"cache_statement", pgx.QueryExecModeCacheStatement},
	{"cache_describe", pgx.QueryExecModeCacheDescribe},
	{"describe_exec", pgx.QueryExecModeDescribeExec},
	{"exec", pgx.QueryExecModeExec},
	{"simple_protocol", pgx.QueryExecModeSimpleProtocol},
}

// The provider works in every query mode on a direct connection.
func TestQueryExecModes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, pgtest.URL(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, paysvc.Migrate(ctx, db.URL))
	for _, m := range queryModes {
		t.Run(m.name, func(t *testing.T) { exerciseMode(t, db.URL, m.mode, m.name) })
	}
}

// The provider works behind PgBouncer in transaction pooling in every query mode that keeps
// no prepared statement on a server connection; migrations go to the server directly.
func TestQueryExecModesPgBouncer(t *testing.T) {
	t.Parallel()
	pooler := os.Getenv(pgtest.EnvPgBouncerURL)
	if pooler == "" {
		t.Fatal(pgtest.HowToPgBouncer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, drop, err := pgtest.CreatePooled(ctx, pgtest.URL(t), pooler, t.Name(), nil)
	require.NoError(t, err)
	t.Cleanup(drop)
	require.NoError(t, paysvc.Migrate(ctx, db.DirectURL))
	for _, m := range queryModes[1:] {
		t.Run(m.name, func(t *testing.T) { exerciseMode(t, db.URL, m.mode, m.name) })
	}
}

// exerciseMode runs every statement of the service through a pool in mode: a charge and its
// replay, a decline, a notification and its redelivery, the list and the stats.
func exerciseMode(t *testing.T, url string, mode pgx.QueryExecMode, name string) {
	ctx := context.Background()
	pool, err := pgtest.PoolWithMode(ctx, url, mode, 4)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	svc, err := paysvc.New(paysvc.Config{DB: pool})
	require.NoError(t, err)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	p := &provider{svc: svc, url: srv.URL, hc: &http.Client{Timeout: time.Minute}}

	ref := "order-" + name
	for i := range 2 {
		a, err := p.post(t, "/charges", "charge-"+name, charge(ref))
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
		assert.Equal(t, i == 1, a.replayed)
	}
	declined := charge("declined-" + name)
	declined.Card = paysvc.CardDeclined
	a, err := p.post(t, "/charges", "decline-"+name, declined)
	require.NoError(t, err)
	assert.Equal(t, http.StatusPaymentRequired, a.status, "%s", a.body)
	for i := range 2 {
		a, err := p.post(t, "/notifications", "note-"+name, note(ref))
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
		assert.Equal(t, i == 1, a.replayed)
	}
	cs, err := paysvc.ListCharges(ctx, pool, ref)
	require.NoError(t, err)
	assert.Len(t, cs, 1)
	var list struct{ Data []paysvc.Charge }
	require.Equal(t, http.StatusOK, p.get(t, "/charges?reference="+ref, &list))
	assert.Len(t, list.Data, 1)
	st, err := paysvc.ReadStats(ctx, pool)
	require.NoError(t, err)
	assert.Zero(t, st.DoubleCharges)
	assert.Zero(t, st.DuplicateNotifications)
	assert.Equal(t, st.NotificationArrivals, 2*st.Notifications)
	assert.Equal(t, http.StatusOK, p.get(t, "/healthz", nil))
}
