package paysvc

import (
	"net/http"
	"sync/atomic"
)

// FaultCounts says what this Service saw and did since New: arrivals per route and the faults
// that fired. They live in the process, not the database (the database holds what committed:
// ReadStats), so they restart from zero with the process.
type FaultCounts struct {
	// ChargeArrivals and NotificationArrivals count HTTP arrivals per route, replays included.
	ChargeArrivals       uint64 `json:"charge_arrivals"`
	NotificationArrivals uint64 `json:"notification_arrivals"`
	// Failed counts 503s answered before anything was done (both routes).
	Failed uint64 `json:"failed"`
	// Dropped counts first answers that committed and were then not sent (connection closed).
	Dropped uint64 `json:"dropped"`
	// Delayed counts answers held back by the Slow fault.
	Delayed uint64 `json:"delayed"`
}

// faultCounters are the atomic counters behind FaultCounts.
type faultCounters struct {
	charges, notifications   atomic.Uint64 // arrivals; also Attempt.N
	failed, dropped, delayed atomic.Uint64
}

// FaultCounts returns the counts so far. Cost: five atomic loads.
func (s *Service) FaultCounts() FaultCounts {
	c := &s.counts
	return FaultCounts{
		ChargeArrivals: c.charges.Load(), NotificationArrivals: c.notifications.Load(),
		Failed: c.failed.Load(), Dropped: c.dropped.Load(), Delayed: c.delayed.Load(),
	}
}

func (s *Service) faultCounts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.FaultCounts())
}
