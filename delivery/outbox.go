package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// The outbox. EnqueueTx inserts a narrow row (an id and the message as JSON, one index) in the
// caller's transaction, and a started Client's forwarder moves committed rows into River's job
// table in batches, in id order, one forwarder at a time. Inserting River's job row directly
// (River's InsertTx) made a short business transaction 1.5-1.9x slower on this project's
// benchmark (a wide row, seven indexes, two of them GIN, River's insert path, and a NOTIFY);
// the narrow row costs about what any extra INSERT costs. See the README's Delivery section.
const (
	sqlOutboxTable = `CREATE TABLE /* pgonce:delivery_outbox_table */ IF NOT EXISTS pgonce_delivery_outbox (
  id bigserial PRIMARY KEY,
  args text NOT NULL -- the message as River job args (JSON); text: no parsing on insert
)`

	// An idle forwarder's one round trip per ForwardInterval.
	sqlOutboxProbe = `SELECT /* pgonce:delivery_outbox_probe */ EXISTS (SELECT 1 FROM pgonce_delivery_outbox)`

	sqlOutboxInsert = `INSERT /* pgonce:delivery_enqueue */ INTO pgonce_delivery_outbox (args) VALUES ($1)`

	// One forwarder at a time (a transaction-level advisory lock, so it works behind a
	// transaction pooler): two forwarding batches committed out of order would give a later
	// message a lower River id, and ordering compares River ids.
	sqlOutboxTake = `WITH forwarder AS (SELECT pg_try_advisory_xact_lock($2) AS ok)
DELETE /* pgonce:delivery_forward */ FROM pgonce_delivery_outbox
WHERE (SELECT ok FROM forwarder)
  AND id IN (SELECT id FROM pgonce_delivery_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, args`
)

// Defaults of the forwarder.
const (
	DefaultForwardInterval = 20 * time.Millisecond
	forwardBatch           = 1000
)

// rawArgs hands River a message's args exactly as EnqueueTx encoded them.
type rawArgs json.RawMessage

func (rawArgs) Kind() string                   { return jobKind }
func (a rawArgs) MarshalJSON() ([]byte, error) { return a, nil }

// forwardLockKey is the advisory lock of schema's forwarder.
func forwardLockKey(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("pgonce_delivery_forward:" + schema))
	return int64(h.Sum64())
}

// forward moves committed outbox rows into River until ctx is done: at once again after a
// full batch, else after ForwardInterval.
func (c *Client) forward(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := c.forwardOnce(ctx)
		if err != nil && ctx.Err() == nil {
			log := c.cfg.Logger
			if log == nil {
				log = slog.Default()
			}
			log.ErrorContext(ctx, "delivery: forwarding the outbox failed; trying again", "error", err)
		}
		if n == forwardBatch {
			t.Reset(0)
		} else {
			t.Reset(c.cfg.ForwardInterval)
		}
	}
}

// forwardOnce moves up to forwardBatch rows in one transaction (BEGIN, DELETE ... RETURNING,
// COPY into River's job table, COMMIT) and returns how many. It moves none while another
// forwarder holds the lock. When the outbox is empty it costs one round trip.
func (c *Client) forwardOnce(ctx context.Context) (int, error) {
	var pending bool
	if err := c.pool.QueryRow(ctx, c.sql.outboxProbe).Scan(&pending); err != nil || !pending {
		return 0, err
	}
	var n int
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, c.sql.outboxTake, forwardBatch, c.lockKey)
		if err != nil {
			return err
		}
		type row struct {
			id   int64
			args []byte
		}
		taken, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.args)
		})
		if err != nil || len(taken) == 0 {
			return err
		}
		slices.SortFunc(taken, func(a, b row) int { return int(a.id - b.id) })
		opts := &river.InsertOpts{Queue: queueName, MaxAttempts: c.cfg.MaxAttempts}
		params := make([]river.InsertManyParams, len(taken))
		for i, r := range taken {
			params[i] = river.InsertManyParams{Args: rawArgs(r.args), InsertOpts: opts}
		}
		n, err = c.river.InsertManyFastTx(ctx, tx, params)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delivery: forward: %w", err)
	}
	return n, nil
}
