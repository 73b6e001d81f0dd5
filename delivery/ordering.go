package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// maxHold caps one wait of a held message, so that a re-driven or deleted earlier message
// releases it within a minute.
const maxHold = time.Minute

// heldBack returns how long the message id with ordering key key must wait for an earlier
// message with the same key, or 0 when none is left to deliver. metadata is the job's River
// metadata, whose "snoozes" count (how often it waited already) doubles the wait up to a
// second, so that a long queue behind one slow message does not poll at full speed.
func (c *Client) heldBack(ctx context.Context, id int64, key string, metadata []byte) (time.Duration, error) {
	var due float64
	err := c.pool.QueryRow(ctx, c.sql.head, key, id).Scan(&due)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var meta struct {
		Snoozes int `json:"snoozes"`
	}
	_ = json.Unmarshal(metadata, &meta)
	wait := c.cfg.OrderingRecheck
	for range min(meta.Snoozes, 16) {
		if wait >= time.Second {
			break
		}
		wait *= 2
	}
	wait = max(min(wait, max(time.Second, c.cfg.OrderingRecheck)), time.Duration(due*float64(time.Second)))
	return min(wait, maxHold), nil
}
