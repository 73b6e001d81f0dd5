package integration_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/examples/orders/ordersvc"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/integration/soak"
)

// The soak's checker is only worth its "0 violations" if it sees violations when they are
// there. A short clean run passes; then each invariant is broken on purpose, in the database
// or in the record, and the checker must name it.
func TestSoakCheckerCatchesViolations(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	skus := map[string]int{"plenty": 1_000_000, "scarce": 200}
	rep, rec := runSoakWith(t, ordersvc.Config{DatabaseURL: db.URL}, db.Pool, 2*time.Second, func(context.Context) {})
	require.True(t, rep.OK())

	// A key that was answered 201 and a replay of some key, to tamper with.
	var created, replayed soak.Event
	for _, e := range rec.Events {
		switch {
		case e.Status == 201 && !e.Replayed && created.Key == "":
			created = e
		case e.Replayed && replayed.Key == "":
			replayed = e
		}
	}
	require.NotEmpty(t, created.Key, "the run created an order")
	require.NotEmpty(t, replayed.Key, "the run replayed a response")

	check := func(name string, mutate func(tx pgx.Tx, rec *soak.Record), want string) {
		t.Helper()
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) // every mutation is undone before the next
		copied := &soak.Record{RunID: rec.RunID, Events: slices.Clone(rec.Events), Scenarios: rec.Scenarios}
		mutate(tx, copied)
		rep, err := soak.Check(ctx, tx, copied, skus)
		require.NoError(t, err)
		found := slices.ContainsFunc(rep.Violations, func(v string) bool { return strings.Contains(v, want) })
		assert.True(t, found, "%s: want a violation containing %q, got %q", name, want, rep.Violations)
	}
	exec := func(tx pgx.Tx, sql string, args ...any) {
		_, err := tx.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}

	check("a second order for one key", func(tx pgx.Tx, _ *soak.Record) {
		exec(tx, `INSERT INTO orders (customer_id, sku, quantity, idempotency_key)
			SELECT customer_id, sku, quantity, idempotency_key FROM orders WHERE idempotency_key = $1`, created.Key)
	}, "has 2 orders")
	check("an order without its key", func(tx pgx.Tx, _ *soak.Record) {
		exec(tx, `DELETE FROM dedupe_keys WHERE key = $1`, created.Key)
	}, "has no stored key")
	check("a key without its order", func(tx pgx.Tx, _ *soak.Record) {
		exec(tx, `DELETE FROM orders WHERE idempotency_key = $1`, created.Key)
	}, "stored 201 without an order")
	check("stock off by one", func(tx pgx.Tx, _ *soak.Record) {
		exec(tx, `UPDATE products SET stock = stock - 1 WHERE sku = 'plenty'`)
	}, "sku plenty: stock")
	check("two different answers for one key", func(_ pgx.Tx, rec *soak.Record) {
		for i, e := range rec.Events {
			if e.Key == replayed.Key && e.Replayed {
				rec.Events[i].Resp = append(slices.Clone(e.Resp), ' ')
				break
			}
		}
	}, "answered")
	check("a failed key that left an effect", func(_ pgx.Tx, rec *soak.Record) {
		for i, e := range rec.Events {
			if e.Key == created.Key {
				rec.Events[i].Status, rec.Events[i].Replayed = 500, false
			}
		}
	}, "every attempt failed")
}
