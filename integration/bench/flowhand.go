package bench

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
)

// The statement shape proposed for flow, written by hand on flow's own tables with flow's
// fences, to measure what it would save (a reference row, not a product: no heartbeat, no
// take-over, no lost-acknowledgement read-back, no replay):
//
//   - the claim rides in the first local step's transaction (BEGIN, drop-expired and claim in
//     one batch), so a request commits three times instead of four;
//   - each record is one statement (the fenced UPDATE of the request and the INSERT of the
//     step's output joined by a CTE) instead of two;
//   - a local step's record is pipelined with its COMMIT;
//   - a foreign step's record is that one statement in autocommit, instead of BEGIN, two
//     statements, COMMIT.
//
// Round trips per request: 7 (flow today: 15).
const (
	handDropExpired = `DELETE FROM flow_requests WHERE scope = $1 AND key = $2 AND state = 'finished' AND expires_at <= now()`
	// The claim as flow sends it (flow/sql.go), durations in microseconds.
	handClaim = `INSERT INTO flow_requests AS f
	(scope, key, fingerprint, flow, input, seed, locked_until, redrive_until, expires_at)
VALUES ($1, $2, $3, $4, $5, $6,
	now() + $7::bigint * interval '1 microsecond',
	now() + $8::bigint * interval '1 microsecond',
	now() + $9::bigint * interval '1 microsecond')
ON CONFLICT (scope, key) DO UPDATE
SET locked_until = now() + $7::bigint * interval '1 microsecond', fence = f.fence + 1,
	attempts = f.attempts + 1, updated_at = now()
WHERE f.state = 'running' AND f.locked_until <= now() AND f.redrive_until > now()
	AND f.fingerprint = excluded.fingerprint AND f.flow = excluded.flow
RETURNING f.fence`
	// Advance and record in one statement: the UPDATE names the fence and locks the row. When
	// the fence moved, adv is empty, the fence inserted is NULL and the INSERT fails (23502,
	// not_null_violation): the transaction aborts, so a COMMIT pipelined behind it rolls the
	// step's writes back instead of committing them without their record.
	handAdvance = `WITH adv AS (
	UPDATE flow_requests
	SET recovery_point = $4, locked_until = now() + $5::bigint * interval '1 microsecond', updated_at = now()
	WHERE scope = $1 AND key = $2 AND fence = $3 AND state = 'running'
	RETURNING fence
)
INSERT INTO flow_steps (scope, key, step, output, fence)
VALUES ($1, $2, $4, $6, (SELECT fence FROM adv))
ON CONFLICT (scope, key, step) DO NOTHING`
	handFinish = `WITH fin AS (
	UPDATE flow_requests
	SET state = 'finished', recovery_point = $4, status = $5, body = $6, locked_until = NULL, updated_at = now(),
		expires_at = greatest(redrive_until, now() + $7::bigint * interval '1 microsecond')
	WHERE scope = $1 AND key = $2 AND fence = $3 AND state = 'running'
	RETURNING fence
)
INSERT INTO flow_steps (scope, key, step, output, fence)
VALUES ($1, $2, $4, '\x'::bytea, (SELECT fence FROM fin))
ON CONFLICT (scope, key, step) DO NOTHING`
)

// Durations of the hand-written shape: flow's defaults, in microseconds.
const (
	handLease   = int64(30_000_000)
	handRedrive = int64(23 * 3600 * 1_000_000)
	handTTL     = int64(24 * 3600 * 1_000_000)
)

// FlowHandDo runs one send in the proposed statement shape (see the constants above).
func (e *FlowEnv) FlowHandDo() Do {
	return func(ctx context.Context, s Send) error {
		fp := dedupe.Fingerprint("POST", "/orders", s.Payload)
		seed := make([]byte, 32)
		_, _ = rand.Read(seed)
		var fence, id int64
		// Step 1, reserve: claim and the step's writes and record, one transaction.
		err := onConn(ctx, e.Pool, func(c *pgx.Conn) error {
			b := &pgx.Batch{}
			b.Queue("BEGIN")
			b.Queue(handDropExpired, FlowName, s.Key)
			b.Queue(handClaim, FlowName, s.Key, fp, FlowName, s.Payload, seed, handLease, handRedrive, handTTL).
				QueryRow(func(r pgx.Row) error { return r.Scan(&fence) })
			if err := c.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
			if err := c.QueryRow(ctx, insertFlowOrder, s.Key, string(s.Payload)).Scan(&id); err != nil {
				return err
			}
			return commitWith(ctx, c, handAdvance, FlowName, s.Key, fence, "reserve", handLease, strconv.AppendInt(nil, id, 10))
		})
		if err != nil {
			return err
		}
		// Step 2, charge: no transaction open; the record is one autocommit statement.
		ch, err := e.charge(ctx, handOutboundKey(seed, FlowName, s.Key, "charge"))
		if err != nil {
			return err
		}
		tag, err := e.Pool.Exec(ctx, handAdvance, FlowName, s.Key, fence, "charge", handLease, ch)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("bench: charge record: %d rows", tag.RowsAffected())
		}
		// Step 3, confirm: BEGIN, the step's writes, then the finish pipelined with COMMIT.
		return onConn(ctx, e.Pool, func(c *pgx.Conn) error {
			if _, err := c.Exec(ctx, "BEGIN"); err != nil {
				return err
			}
			if _, err := c.Exec(ctx, confirmFlowOrder, id, string(ch)); err != nil {
				return err
			}
			body := []byte(`{"order":` + strconv.FormatInt(id, 10) + `}`)
			return commitWith(ctx, c, handFinish, FlowName, s.Key, fence, "confirm", http.StatusCreated, body, handTTL)
		})
	}
}

// onConn runs fn on one connection of pool; fn sends BEGIN and, through commitWith, COMMIT
// itself, so that each can share a round trip. On error the transaction is rolled back.
func onConn(ctx context.Context, pool *pgxpool.Pool, fn func(c *pgx.Conn) error) error {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer pc.Release()
	if err = fn(pc.Conn()); err != nil {
		_, _ = pc.Conn().Exec(context.WithoutCancel(ctx), "ROLLBACK")
	}
	return err
}

// commitWith sends the record statement and COMMIT in one round trip. A moved fence fails
// the record (see handAdvance), which turns the COMMIT into a rollback.
func commitWith(ctx context.Context, c *pgx.Conn, sql string, args ...any) error {
	b := &pgx.Batch{}
	var rows int64
	b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error { rows = ct.RowsAffected(); return nil })
	b.Queue("COMMIT")
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	if rows != 1 {
		return fmt.Errorf("bench: record: %d rows (fence moved)", rows)
	}
	return nil
}

// handOutboundKey derives the outbound key as flow.State.OutboundKey does.
func handOutboundKey(seed []byte, scope, key, step string) string {
	m := hmac.New(sha256.New, seed)
	m.Write([]byte(scope))
	m.Write([]byte{0})
	m.Write([]byte(key))
	m.Write([]byte{0})
	m.Write([]byte(step))
	return "pgonce_" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}
