package paysvc

import (
	"context"
	"net/http"

	"github.com/jackc/pgx/v5"
)

// Querier is what the read functions need: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Stats counts what the provider's database holds: the numbers of the demo's table.
type Stats struct {
	// Charges is the number of charge rows (money taken).
	Charges int64 `json:"charges"`
	// ChargedReferences is the number of distinct references charged.
	ChargedReferences int64 `json:"charged_references"`
	// DoubleCharges is Charges - ChargedReferences: charges beyond the first for a
	// reference. Anything but 0 is a double charge.
	DoubleCharges int64 `json:"double_charges"`
	// Declines is the number of 402 answers committed.
	Declines int64 `json:"declines"`
	// NotificationArrivals counts every HTTP arrival at POST /notifications: deliveries
	// attempted, duplicates and failures included.
	NotificationArrivals int64 `json:"notification_arrivals"`
	// Notifications is the number of effect rows; NotifiedOrders the distinct order_refs.
	Notifications  int64 `json:"notifications"`
	NotifiedOrders int64 `json:"notified_orders"`
	// DuplicateNotifications is Notifications - NotifiedOrders: effects beyond the first for
	// an order. Anything but 0 is a duplicated effect.
	DuplicateNotifications int64 `json:"duplicate_notifications"`
}

const sqlStats = `/* payments:stats */ SELECT
  (SELECT count(*) FROM charges),
  (SELECT count(DISTINCT reference) FROM charges),
  (SELECT count(*) FROM declines),
  (SELECT count(*) FROM notification_arrivals),
  (SELECT count(*) FROM notifications),
  (SELECT count(DISTINCT order_ref) FROM notifications)`

// ReadStats counts the provider's tables in one statement (one round trip; it scans every
// table, which is fine for a demo's few thousand rows).
func ReadStats(ctx context.Context, q Querier) (Stats, error) {
	var s Stats
	err := q.QueryRow(ctx, sqlStats).Scan(&s.Charges, &s.ChargedReferences, &s.Declines,
		&s.NotificationArrivals, &s.Notifications, &s.NotifiedOrders)
	s.DoubleCharges = s.Charges - s.ChargedReferences
	s.DuplicateNotifications = s.Notifications - s.NotifiedOrders
	return s, err
}

// ListCharges returns the charges made for reference, oldest first (one round trip). More
// than one is a double charge.
func ListCharges(ctx context.Context, q Querier, reference string) ([]Charge, error) {
	rows, err := q.Query(ctx, sqlListCharges, reference)
	if err != nil {
		return nil, err
	}
	cs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Charge, error) {
		c := Charge{Status: StatusSucceeded}
		err := row.Scan(&c.ID, &c.Amount, &c.Currency, &c.Reference, &c.CreatedAt)
		c.CreatedAt = c.CreatedAt.UTC()
		return c, err
	})
	if cs == nil {
		cs = []Charge{}
	}
	return cs, err
}

func (s *Service) stats(w http.ResponseWriter, r *http.Request) {
	st, err := ReadStats(r.Context(), s.db)
	if err != nil {
		s.internal(w, r, "stats", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
