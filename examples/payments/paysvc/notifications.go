package paysvc

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/pgonce/pgonce/dedupe/dedupehttp"
)

// Notification is the body of POST /notifications: any JSON object with an order_ref (1 to
// 128 bytes); the whole body is stored. The answer is 201 with a NotificationReceipt.
type Notification struct {
	OrderRef string `json:"order_ref"`
}

// NotificationReceipt is the body of a 201 answer to POST /notifications; a redelivery with
// the same Idempotency-Key gets the same receipt back (Idempotent-Replayed: true).
type NotificationReceipt struct {
	ID         string    `json:"id"`
	OrderRef   string    `json:"order_ref"`
	ReceivedAt time.Time `json:"received_at"`
}

const (
	sqlInsertNotification = `/* payments:insert_notification */ INSERT INTO notifications (id, key, order_ref, body)
VALUES ($1, $2, $3, $4) RETURNING received_at`
	sqlInsertArrival = `/* payments:insert_arrival */ INSERT INTO notification_arrivals (key) VALUES ($1)`
)

// countArrival records every arrival at the route in its own statement, before and outside
// the idempotency transaction, so Stats can compare deliveries attempted with effects.
func (s *Service) countArrival(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.db.Exec(r.Context(), sqlInsertArrival, headerKey(r)); err != nil {
			s.log.ErrorContext(r.Context(), "count arrival", "error", err)
			w.Header().Set("Retry-After", "1")
			problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "Receiver unavailable", "Nothing was done.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// receiveNotification runs inside the idempotency transaction on the sender's key: the effect
// row commits with the key, so a redelivery replays the receipt instead of adding a row.
func (s *Service) receiveNotification(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tx, _ := dedupehttp.Tx(ctx)
	key, _ := dedupehttp.Key(ctx)
	var raw json.RawMessage
	var n Notification
	err := decodeAny(r, &raw)
	if err == nil {
		err = json.Unmarshal(raw, &n)
	}
	switch {
	case err != nil || len(raw) == 0 || raw[0] != '{':
		problem(w, http.StatusBadRequest, ProblemInvalidNotification, "Invalid notification", "The body must be a JSON object.")
		return
	case n.OrderRef == "" || len(n.OrderRef) > 128 || !storable(n.OrderRef):
		problem(w, http.StatusBadRequest, ProblemInvalidNotification, "Invalid notification", "order_ref must be 1 to 128 bytes of text.")
		return
	case bytes.Contains(raw, []byte(`\u0000`)):
		// jsonb cannot hold a NUL character.
		problem(w, http.StatusBadRequest, ProblemInvalidNotification, "Invalid notification", `The body must not contain \u0000.`)
		return
	}
	rec := NotificationReceipt{ID: newID("ntf_"), OrderRef: n.OrderRef}
	if err := tx.QueryRow(ctx, sqlInsertNotification, rec.ID, key, n.OrderRef, string(raw)).Scan(&rec.ReceivedAt); err != nil {
		s.internal(w, r, "insert notification", err)
		return
	}
	rec.ReceivedAt = rec.ReceivedAt.UTC()
	arrivalFrom(ctx).first.Store(true)
	writeJSON(w, http.StatusCreated, rec)
}

var errTrailing = errors.New("paysvc: trailing data after the JSON value")

// decodeAny reads one JSON value (of any shape) from the body.
func decodeAny(r *http.Request, raw *json.RawMessage) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(raw); err != nil {
		return err
	}
	if dec.More() {
		return errTrailing
	}
	return nil
}
