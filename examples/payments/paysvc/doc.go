// Package paysvc is a small payment provider built on the pgonce toolkit, for the order
// service's demo, soak and integration tests: it charges cards exactly once per
// Idempotency-Key, can misbehave on purpose (Faults), and receives order-confirmed
// notifications exactly once per delivery key.
//
// It is a library so tests and the soak run it in-process; examples/payments is the command.
// The caller owns the pool and the schema:
//
//	if err := paysvc.Migrate(ctx, databaseURL); err != nil { ... } // toolkit + own tables
//	svc, err := paysvc.New(paysvc.Config{DB: pool, Faults: paysvc.Faults{DropAfterCommit: 0.1}})
//	if err != nil { ... }
//	http.ListenAndServe(addr, svc.Handler())
//
// # Routes
//
//	POST /charges         charge a card (Idempotency-Key required): 201 charge, 402 declined
//	GET  /charges         ?reference=R: the charges made for R (two or more: a double charge)
//	POST /notifications   receive an order-confirmed notification (Idempotency-Key required)
//	GET  /stats           counts of what committed, for the demo table (ReadStats)
//	GET  /faults          arrivals and faults fired in this process (FaultCounts)
//	GET  /healthz         PostgreSQL reachable
//
// # Why nothing happens twice
//
// The charge row is inserted inside the transaction dedupehttp opens for the key, so the row,
// the key and the stored answer commit together. A retry with the same key replays the stored
// 201 (or 402) byte for byte, however the first answer was lost. A 5xx commits nothing and
// frees the key. The notification receiver does the same with the sender's key: at-least-once
// delivery in, one effect row out. No table has a unique constraint that would hide a
// duplicate: the tables count what happened (ReadStats), and a duplicate would show.
//
// All SQL is plain parameterised statements, so the service works in every pgx
// QueryExecMode and behind PgBouncer in transaction pooling; Migrate needs a direct
// (session) connection, like golang-migrate always does.
package paysvc
