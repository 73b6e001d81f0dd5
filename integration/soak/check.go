package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Report is what the checker found.
type Report struct {
	Requests       int // requests sent
	Keys           int // logical requests (distinct keys)
	DuplicateSends int // requests beyond the first for their key: what dedupe had to absorb
	Orders         int // orders in PostgreSQL for the run's keys
	Created        int // 201 first executions seen
	Replays        int // answers with Idempotent-Replayed: true
	InProgress     int // 409 idempotency-key-in-progress
	Mismatch       int // 422 idempotency-key-mismatch
	Refusals       int // committed business refusals (out of stock, invalid)
	ServerErrors   int // 5xx answers (injected failures and faults)
	NoAnswer       int // transport errors and abandoned requests
	Injected       int // requests that told the server to fail after its writes
	Abandoned      int // requests the client gave up on after 1-20ms
	Violations     []string
}

// Querier reads the database; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// OK reports whether no invariant was violated.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// String renders the report as a Markdown table followed by the violations.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| soak | count |\n|---|--:|\n")
	for _, row := range []struct {
		k string
		v int
	}{
		{"requests sent", r.Requests}, {"logical requests (keys)", r.Keys}, {"duplicate sends absorbed", r.DuplicateSends},
		{"orders in PostgreSQL", r.Orders}, {"first executions (201)", r.Created}, {"replays", r.Replays},
		{"409 in progress", r.InProgress}, {"422 key reused with another body", r.Mismatch},
		{"committed refusals (out of stock)", r.Refusals}, {"5xx (injected failures, faults)", r.ServerErrors},
		{"no answer (abandoned, transport)", r.NoAnswer}, {"faults injected: requests told to fail after their writes", r.Injected},
		{"faults injected: requests abandoned mid-flight", r.Abandoned}, {"violations", len(r.Violations)},
	} {
		fmt.Fprintf(&b, "| %s | %d |\n", row.k, row.v)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "VIOLATION: %s\n", v)
	}
	return b.String()
}

type dbOrder struct {
	id       int64
	sku      string
	quantity int
}

type dbKey struct {
	status int
	body   []byte
}

// Check verifies the record against the database. It trusts no answer and no code of the
// toolkit: it reads the orders, dedupe_keys and products tables with its own SQL.
//
// Invariants:
//  1. at most one order per key;
//  2. every definitive answer (201, or a committed 4xx refusal) seen for a key is
//     byte-identical to the others for that key and body, and to the stored response;
//  3. a stored 201 has exactly its order (same id), every order has its stored 201, and a
//     stored refusal has no order;
//  4. a key whose every attempt was answered 5xx has no order and no stored key;
//  5. every 201 seen names an order that exists with that key, sku and quantity;
//  6. stock is never negative and equals the seeded stock minus the orders' quantities.
func Check(ctx context.Context, pool Querier, rec *Record, skus map[string]int) (Report, error) {
	return CheckKeysIn(ctx, pool, "dedupe_keys", rec, skus)
}

// CheckKeysIn is Check reading the stored keys from keys, a table or a parenthesised query
// with dedupe_keys' columns scope, key, status and body (for the generations layout: its
// tables, and the keys the soak saved before each truncation).
func CheckKeysIn(ctx context.Context, pool Querier, keysFrom string, rec *Record, skus map[string]int) (Report, error) {
	var rep Report
	prefix := rec.RunID + "-%"
	orders := map[string][]dbOrder{}
	rows, err := pool.Query(ctx, `SELECT idempotency_key, id, sku, quantity FROM orders WHERE idempotency_key LIKE $1`, prefix)
	if err != nil {
		return rep, err
	}
	for rows.Next() {
		var k string
		var o dbOrder
		if err := rows.Scan(&k, &o.id, &o.sku, &o.quantity); err != nil {
			return rep, err
		}
		orders[k] = append(orders[k], o)
		rep.Orders++
	}
	if err := rows.Err(); err != nil {
		return rep, err
	}
	keys := map[string]dbKey{}
	rows, err = pool.Query(ctx, `SELECT key, coalesce(status, -1), coalesce(body, '') FROM `+keysFrom+` k WHERE scope = 'POST /orders' AND key LIKE $1`, prefix)
	if err != nil {
		return rep, err
	}
	for rows.Next() {
		var k string
		var d dbKey
		if err := rows.Scan(&k, &d.status, &d.body); err != nil {
			return rep, err
		}
		keys[k] = d
	}
	if err := rows.Err(); err != nil {
		return rep, err
	}
	violate := func(format string, args ...any) {
		if len(rep.Violations) < 50 {
			rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
		}
	}

	// 1 and 3, from the database alone.
	for k, os := range orders {
		if len(os) > 1 {
			violate("key %s has %d orders", k, len(os))
		}
		d, ok := keys[k]
		switch {
		case !ok:
			violate("order %d has no stored key %s", os[0].id, k)
		case d.status != 201:
			violate("key %s stored status %d but has order %d", k, d.status, os[0].id)
		case orderID(d.body) != os[0].id:
			violate("key %s stored order %d but the database has order %d", k, orderID(d.body), os[0].id)
		}
	}
	for k, d := range keys {
		if d.status == 201 && len(orders[k]) == 0 {
			violate("key %s stored 201 without an order", k)
		}
		if d.status == -1 {
			violate("key %s committed without a response", k)
		}
	}

	// 2, 4, 5 from the record.
	byKey := map[string][]Event{}
	for _, e := range rec.Events {
		byKey[e.Key] = append(byKey[e.Key], e)
	}
	rep.Requests = len(rec.Events)
	rep.Keys = len(byKey)
	for k, events := range byKey {
		rep.DuplicateSends += len(events) - 1
		definitive := map[string][]byte{} // request body -> answer
		allFailed := true
		for _, e := range events {
			if e.Fail {
				rep.Injected++
			}
			if e.Timeout {
				rep.Abandoned++
			}
			switch {
			case e.Status == 0:
				rep.NoAnswer++
			case e.Status >= 500:
				rep.ServerErrors++
			case strings.HasSuffix(e.Problem, "idempotency-key-in-progress"):
				rep.InProgress++
			case strings.HasSuffix(e.Problem, "idempotency-key-mismatch"):
				rep.Mismatch++
			default:
				if e.Replayed {
					rep.Replays++
				} else if e.Status == 201 {
					rep.Created++
				} else {
					rep.Refusals++
				}
				if prev, ok := definitive[e.Body]; ok && !bytes.Equal(prev, e.Resp) {
					violate("key %s answered differently: %s vs %s", k, prev, e.Resp)
				}
				definitive[e.Body] = e.Resp
				if d, ok := keys[k]; !ok || !bytes.Equal(d.body, e.Resp) {
					violate("key %s answered %d %s but stored %q", k, e.Status, e.Resp, keys[k].body)
				}
				if e.Status == 201 {
					checkCreated(k, e, orders[k], violate)
				}
			}
			if e.Status < 500 {
				allFailed = false
			}
		}
		if allFailed && (len(orders[k]) > 0 || keys[k].status != 0) {
			violate("key %s: every attempt failed but it has %d orders, stored status %d", k, len(orders[k]), keys[k].status)
		}
	}

	// 6.
	var names []string
	for s := range skus {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, sku := range names {
		var stock, sold int
		if err := pool.QueryRow(ctx, `SELECT p.stock, coalesce((SELECT sum(quantity) FROM orders o WHERE o.sku = p.sku), 0)
			FROM products p WHERE p.sku = $1`, sku).Scan(&stock, &sold); err != nil {
			return rep, fmt.Errorf("stock of %s: %w", sku, err)
		}
		if stock < 0 || stock != skus[sku]-sold {
			violate("sku %s: stock %d, seeded %d, sold %d", sku, stock, skus[sku], sold)
		}
	}
	return rep, nil
}

func checkCreated(key string, e Event, os []dbOrder, violate func(string, ...any)) {
	var got struct {
		ID       int64  `json:"id"`
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	}
	var sent order
	_ = json.Unmarshal(e.Resp, &got)
	_ = json.Unmarshal([]byte(e.Body), &sent)
	if len(os) != 1 || os[0].id != got.ID || os[0].sku != sent.SKU || os[0].quantity != sent.Quantity {
		violate("key %s answered 201 with order %d (%s x%d) but the database has %v", key, got.ID, sent.SKU, sent.Quantity, os)
	}
}

func orderID(body []byte) int64 {
	var o struct {
		ID int64 `json:"id"`
	}
	_ = json.Unmarshal(body, &o)
	return o.ID
}
