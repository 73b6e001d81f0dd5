package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DeadMessage is a message that will not be attempted again unless re-driven.
type DeadMessage struct {
	ID      int64
	Message Message
	// Refused is true when the receiver refused it (a 4xx other than 408, 425, 429, or a 3xx),
	// false when its attempts ran out.
	Refused bool
	// Attempts is how many attempts were made.
	Attempts int
	// LastError is the last attempt's error text ("delivery: receiver answered 404 Not Found").
	LastError string
	// DiedAt is when it became dead.
	DiedAt time.Time
}

// ListDeadParams pages ListDead. A nil *ListDeadParams means the first DefaultListLimit.
type ListDeadParams struct {
	// AfterID lists messages with a greater ID (pass the last ID of the previous page).
	AfterID int64
	// Limit is the page size; default DefaultListLimit, at most MaxListLimit.
	Limit int
}

// Limits of ListDead.
const (
	DefaultListLimit = 100
	MaxListLimit     = 10_000
)

// ListDead returns dead messages in ID order, one page at a time (one query). They stay
// listed for Config.DeadRetention.
func (c *Client) ListDead(ctx context.Context, p *ListDeadParams) ([]DeadMessage, error) {
	var after int64
	limit := DefaultListLimit
	if p != nil {
		after = p.AfterID
		if p.Limit < 0 || p.Limit > MaxListLimit {
			return nil, fmt.Errorf("delivery: ListDeadParams.Limit %d is not in 0..%d", p.Limit, MaxListLimit)
		}
		if p.Limit > 0 {
			limit = p.Limit
		}
	}
	rows, err := c.pool.Query(ctx, c.sql.listDead, after, limit)
	if err != nil {
		return nil, fmt.Errorf("delivery: list dead: %w", err)
	}
	var out []DeadMessage
	for rows.Next() {
		var (
			d     DeadMessage
			raw   []byte
			state string
			died  *time.Time
		)
		if err := rows.Scan(&d.ID, &raw, &state, &d.Attempts, &died, &d.LastError); err != nil {
			return nil, fmt.Errorf("delivery: list dead: %w", err)
		}
		var a args
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("delivery: list dead: message %d: %w", d.ID, err)
		}
		d.Message = Message(a)
		d.Refused = state == "cancelled"
		if died != nil {
			d.DiedAt = *died
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("delivery: list dead: %w", err)
	}
	return out, nil
}

// Redrive makes the dead message id deliverable again at once, with a fresh budget of
// MaxAttempts attempts and the same key. It returns ErrNotFound for an unknown id and
// ErrNotDead for a message that is delivered, pending or in flight (re-driving those would
// send a delivered message again). Cost: one transaction of three statements, the message's
// row locked meanwhile.
func (c *Client) Redrive(ctx context.Context, id int64) error {
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var state string
		if err := tx.QueryRow(ctx, c.sql.lockForRedrive, id).Scan(&state); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		if state != "cancelled" && state != "discarded" {
			return fmt.Errorf("%w: it is %s", ErrNotDead, state)
		}
		if _, err := tx.Exec(ctx, c.sql.redriveBudget, id, c.cfg.MaxAttempts); err != nil {
			return err
		}
		_, err := c.river.JobRetryTx(ctx, tx, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delivery: redrive %d: %w", id, err)
	}
	return nil
}
