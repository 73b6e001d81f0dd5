// Package delivery is a transactional outbox that delivers HTTP messages at least once, each
// with a stable Idempotency-Key, built on River (riverqueue/river). With a receiver that
// deduplicates on that key (package dedupehttp), at-least-once delivery becomes an
// exactly-once effect.
//
// Enqueue in the transaction of the business write the message announces; it is delivered
// if and only if that transaction commits:
//
//	if err := delivery.Migrate(ctx, pool, nil); err != nil { ... } // River's tables + the outbox
//	client, err := delivery.New(pool, &delivery.Config{Workers: 32})
//	if err != nil { ... }
//	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		if _, err := tx.Exec(ctx, `UPDATE orders SET state = 'confirmed' WHERE id = $1`, id); err != nil {
//			return err
//		}
//		return client.EnqueueTx(ctx, tx, delivery.Message{
//			URL:  "https://hooks.example.com/orders",
//			Key:  fmt.Sprintf("order-%d-confirmed", id),
//			Body: body,
//		})
//	})
//	if err := client.Start(ctx); err != nil { ... } // in the processes that deliver
//	defer client.Stop(context.Background())
//
// A 2xx answer delivers a message; 408, 425, 429, 5xx and transport errors are retried with
// jittered exponential backoff, honouring Retry-After, up to MaxAttempts; any other status
// makes it dead at once. Dead messages are listed (ListDead) and re-driven (Redrive).
// Messages with the same OrderingKey are delivered in order. Behind PgBouncer in transaction
// pooling set Config.PollOnly. Client's documentation has the details and costs.
//
// River comes with this module only: the toolkit's core module does not depend on it.
package delivery
