package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/pgerr"
)

// Schema is created once per benchmark database, next to the toolkit's migrations.
const Schema = `
CREATE TABLE bench_orders (
	id          bigserial PRIMARY KEY,
	request_key text NOT NULL,
	payload     text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now()
);
-- The naive approach's request log: looked up by key, but without a unique index (the
-- point of the approach is that it checks first, so it "does not need one").
CREATE TABLE naive_requests (key text NOT NULL, response text NOT NULL);
CREATE INDEX naive_requests_key_idx ON naive_requests (key);
-- The Stripe-style design's key table (atomic phases with a recovery point).
CREATE TABLE stripe_keys (
	key            text PRIMARY KEY,
	request_params text NOT NULL,
	locked_at      timestamptz,
	recovery_point text NOT NULL DEFAULT 'started',
	response_code  integer,
	response_body  text,
	created_at     timestamptz NOT NULL DEFAULT now()
);
-- The hot row of the locking benchmarks.
CREATE TABLE bench_products (sku text PRIMARY KEY, stock bigint NOT NULL, version bigint NOT NULL DEFAULT 1);`

// Reset empties every table the workloads write, between cells.
const Reset = `TRUNCATE bench_orders, naive_requests, stripe_keys, dedupe_keys, bench_products;
INSERT INTO bench_products (sku, stock) VALUES ('hot', 1000000000);
` + seedProducts

// DuplicateEffects is business rows minus distinct keys: orders created more than once.
func DuplicateEffects(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) - count(DISTINCT request_key) FROM bench_orders`).Scan(&n)
	return n, err
}

// insertOrder is the business write every approach performs.
func insertOrder(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, s Send) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `INSERT INTO bench_orders (request_key, payload) VALUES ($1, $2) RETURNING id`, s.Key, s.Payload).Scan(&id)
	return id, err
}

// Plain is the ceiling: the business insert in pgx.BeginFunc, no deduplication at all.
func Plain(pool *pgxpool.Pool) Do {
	return func(ctx context.Context, s Send) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := insertOrder(ctx, tx, s)
			return err
		})
	}
}

// Toolkit is dedupe.Do around the same insert, fingerprinting the payload.
func Toolkit(pool *pgxpool.Pool, d *dedupe.Deduper) Do { return viaRunner(pool, d) }

// viaRunner sends each request through r (the dedupe core, or the core behind the Redis
// guard) around the business insert.
func viaRunner(pool *pgxpool.Pool, r dedupe.Runner) Do {
	return func(ctx context.Context, s Send) error {
		_, err := r.Do(ctx, pool, dedupe.Request{
			Scope:       "bench.orders",
			Key:         s.Key,
			Fingerprint: dedupe.Fingerprint("POST", "/orders", s.Payload),
		}, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
			id, err := insertOrder(ctx, tx, s)
			return dedupe.Response{Status: 201, Body: fmt.Appendf(nil, `{"id":%d}`, id)}, err
		})
		if errors.Is(err, dedupe.ErrInProgress) {
			return ErrInProgress
		}
		return err
	}
}

// Naive checks whether the key was seen, then inserts: correct one request at a time,
// duplicated under concurrency, because nothing makes the check and the insert atomic.
func Naive(pool *pgxpool.Pool) Do {
	return func(ctx context.Context, s Send) error {
		var resp string
		err := pool.QueryRow(ctx, `SELECT response FROM naive_requests WHERE key = $1 LIMIT 1`, s.Key).Scan(&resp)
		if err == nil {
			return nil // "replay"
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			id, err := insertOrder(ctx, tx, s)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO naive_requests (key, response) VALUES ($1, $2)`, s.Key, fmt.Sprintf(`{"id":%d}`, id))
			return err
		})
	}
}

// StripeStyle follows the "atomic phases" design: claim the key with locked_at in its own
// transaction, do the business write (and advance the recovery point) in a second, record the
// response and unlock in a third. A duplicate that finds the key locked is turned away (409);
// one that finds it finished replays. The claim is one autocommit statement here, which is
// cheaper than the SERIALIZABLE transaction of the original write-up.
func StripeStyle(pool *pgxpool.Pool) Do {
	return func(ctx context.Context, s Send) error {
		var claimed bool
		err := pool.QueryRow(ctx, `INSERT INTO stripe_keys (key, request_params, locked_at) VALUES ($1, $2, now())
			ON CONFLICT (key) DO NOTHING RETURNING true`, s.Key, s.Payload).Scan(&claimed)
		if errors.Is(err, pgx.ErrNoRows) {
			var code *int32
			var locked *time.Time
			if err := pool.QueryRow(ctx, `SELECT response_code, locked_at FROM stripe_keys WHERE key = $1`, s.Key).Scan(&code, &locked); err != nil {
				return err
			}
			if code != nil {
				return nil // replay
			}
			return ErrInProgress
		}
		if err != nil {
			return err
		}
		var id int64
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if id, err = insertOrder(ctx, tx, s); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE stripe_keys SET recovery_point = 'order_created' WHERE key = $1`, s.Key)
			return err
		})
		if err != nil {
			return err
		}
		_, err = pool.Exec(ctx, `UPDATE stripe_keys SET response_code = 201, response_body = $2, locked_at = NULL,
			recovery_point = 'finished' WHERE key = $1`, s.Key, fmt.Sprintf(`{"id":%d}`, id))
		return err
	}
}

// SeedReplays commits n keys through the toolkit so replay runs have something to replay,
// and returns them.
func SeedReplays(ctx context.Context, pool *pgxpool.Pool, d *dedupe.Deduper, prefix string, n int) ([]string, error) {
	do := Toolkit(pool, d)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%d", prefix, i)
		if err := do(ctx, Send{Key: keys[i], Payload: payload(keys[i])}); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// KeyRowByHand is the plain transaction plus the key row the toolkit writes, by hand: the
// cost of recording a key at all, before storing a response.
func KeyRowByHand(pool *pgxpool.Pool) Do {
	return func(ctx context.Context, s Send) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO dedupe_keys (scope, key, fingerprint, expires_at)
				VALUES ('hand', $1, '\x00', now() + interval '1 day') ON CONFLICT DO NOTHING`, s.Key); err != nil {
				return err
			}
			_, err := insertOrder(ctx, tx, s)
			return err
		})
	}
}

// KeyRowAndResponseByHand adds the response UPDATE: every statement the toolkit sends for a
// new key, in a plain transaction, without pipelining.
func KeyRowAndResponseByHand(pool *pgxpool.Pool) Do {
	return keyRowAndResponse(pool)
}

// KeyRowAndResponsePipelined runs 2b's statements in plain's three round trips: BEGIN and the
// key row in one pipelined batch, the business insert, then the response UPDATE and COMMIT in
// one batch. It answers whether the toolkit could match plain by saving round trips: pgx's
// Tx API cannot (BeginTx always waits for BEGIN), so this drives a bare connection.
func KeyRowAndResponsePipelined(pool *pgxpool.Pool) Do {
	return func(ctx context.Context, s Send) error {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		b := &pgx.Batch{}
		b.Queue(`BEGIN`)
		b.Queue(`INSERT INTO dedupe_keys (scope, key, fingerprint, expires_at)
			VALUES ('hand', $1, '\x00', now() + interval '1 day') ON CONFLICT DO NOTHING`, s.Key)
		if err := c.SendBatch(ctx, b).Close(); err != nil {
			return rollback(ctx, c, err)
		}
		id, err := insertOrder(ctx, c, s)
		if err != nil {
			return rollback(ctx, c, err)
		}
		b = &pgx.Batch{}
		b.Queue(`UPDATE dedupe_keys SET status = 201, body = $2, completed_at = now() WHERE scope = 'hand' AND key = $1`,
			s.Key, fmt.Appendf(nil, `{"id":%d}`, id))
		b.Queue(`COMMIT`)
		if err := c.SendBatch(ctx, b).Close(); err != nil {
			return rollback(ctx, c, err)
		}
		return nil
	}
}

// rollback ends a failed transaction on a bare connection before it goes back to the pool.
func rollback(ctx context.Context, c *pgxpool.Conn, err error) error {
	if _, rerr := c.Exec(context.WithoutCancel(ctx), `ROLLBACK`); rerr != nil {
		c.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck // the pool drops it
	}
	return err
}

func keyRowAndResponse(pool *pgxpool.Pool) Do {
	return func(ctx context.Context, s Send) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO dedupe_keys (scope, key, fingerprint, expires_at)
				VALUES ('hand', $1, '\x00', now() + interval '1 day') ON CONFLICT DO NOTHING`, s.Key); err != nil {
				return err
			}
			id, err := insertOrder(ctx, tx, s)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE dedupe_keys SET status = 201, body = $2, completed_at = now() WHERE scope = 'hand' AND key = $1`,
				s.Key, fmt.Appendf(nil, `{"id":%d}`, id))
			return err
		})
	}
}

// LockFirstByHand is the claim-last shape with the key locked first: BEGIN, a
// transaction-scoped advisory lock on the key's hash and a lookup of the key in one pipelined
// batch, the business insert, then the key row with its response in one INSERT pipelined with
// COMMIT. A concurrent duplicate waits on the lock instead of running the business write, and
// then finds the committed key; the key row is still written once.
func LockFirstByHand(pool *pgxpool.Pool) Do {
	return func(ctx context.Context, s Send) error {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		b := &pgx.Batch{}
		b.Queue(`BEGIN`)
		b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`, s.Key)
		found := false
		b.Queue(`SELECT status FROM dedupe_keys WHERE scope = 'hand' AND key = $1`, s.Key).QueryRow(func(r pgx.Row) error {
			var st *int32
			err := r.Scan(&st)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			found = err == nil
			return err
		})
		if err := c.SendBatch(ctx, b).Close(); err != nil {
			return rollback(ctx, c, err)
		}
		if found {
			_, err := c.Exec(ctx, `ROLLBACK`)
			return err
		}
		id, err := insertOrder(ctx, c, s)
		if err != nil {
			return rollback(ctx, c, err)
		}
		b = &pgx.Batch{}
		b.Queue(`INSERT INTO dedupe_keys (scope, key, fingerprint, status, body, completed_at, expires_at)
			VALUES ('hand', $1, '\x00', 201, $2, now(), now() + interval '1 day')`, s.Key, fmt.Appendf(nil, `{"id":%d}`, id))
		b.Queue(`COMMIT`)
		if err := c.SendBatch(ctx, b).Close(); err != nil {
			return rollback(ctx, c, err)
		}
		return nil
	}
}

// ClaimLastByHand is the claim-last shape, by hand: BEGIN, the business insert, then the key
// row with its response in one INSERT pipelined with COMMIT (a conflict aborts, so the
// COMMIT rolls back). Plain's round trips, and the key row written once instead of inserted
// and then updated; a duplicate is found only after the business write ran.
func ClaimLastByHand(pool *pgxpool.Pool) Do {
	return func(ctx context.Context, s Send) error {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		id, err := insertOrder(ctx, tx, s)
		if err != nil {
			return rollback(ctx, c, err)
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO dedupe_keys (scope, key, fingerprint, status, body, completed_at, expires_at)
			VALUES ('hand', $1, '\x00', 201, $2, now(), now() + interval '1 day')`, s.Key, fmt.Appendf(nil, `{"id":%d}`, id))
		b.Queue(`COMMIT`)
		if err := c.SendBatch(ctx, b).Close(); err != nil {
			// The error skips the rest of the batch, COMMIT included: the transaction is left
			// aborted and needs its ROLLBACK (a round trip) in every query mode.
			if rerr := rollback(ctx, c, err); pgerr.Is(rerr, pgerr.UniqueViolation) {
				return ErrInProgress // the duplicate's effects rolled back with it
			}
			return err
		}
		return nil
	}
}
