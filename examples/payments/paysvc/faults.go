package paysvc

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"time"
)

// Faults sets how often the provider misbehaves, as fractions from 0 (never, the default) to
// 1 (always). Each is drawn independently per HTTP arrival (Attempt), from a hash of Seed and
// the arrival number, so a run with the same seed and the same arrival order makes the same
// choices; Decline is drawn from the Idempotency-Key instead, so a key is declined on every
// attempt or on none.
//
// The faults are those a client of a real provider must survive, and what each means for it:
//
//	FailBeforeCharge  503 before anything is written: nothing charged, the key stays free
//	DropAfterCommit   the charge (or decline) commits, then the connection is closed without an
//	                  answer: the client sees EOF, and only a retry with the same key (which
//	                  replays the stored answer) tells it what happened
//	Slow              the answer is held back SlowDelay after the commit: a client whose
//	                  timeout is shorter gives up on a charge that happened
//	Decline           402 card_declined, committed with the key and replayed to retries
type Faults struct {
	// FailBeforeCharge is the fraction of POST /charges arrivals answered 503 before the
	// request reaches the idempotency layer.
	FailBeforeCharge float64
	// DropAfterCommit is the fraction of POST /charges arrivals whose committed first answer
	// (201 or 402) is replaced by closing the connection. Replays are always answered.
	DropAfterCommit float64
	// Slow is the fraction of POST /charges arrivals answered SlowDelay late (replays too).
	Slow float64
	// SlowDelay is how late a slow answer is; default DefaultSlowDelay. The wait ends early
	// if the client goes away.
	SlowDelay time.Duration
	// Decline is the fraction of idempotency keys whose charge is declined (402). Cards
	// CardDeclined and CardInsufficientFunds are always declined.
	Decline float64
	// NotifyFail is the fraction of POST /notifications arrivals answered 503 before the
	// request reaches the idempotency layer (the arrival is still counted).
	NotifyFail float64
	// Seed makes the draws differ between runs; the same seed repeats them.
	Seed uint64
	// Decide, when set, replaces the draws above: it is called once per arrival and its
	// Decision is obeyed (tests force each path with it), on both routes (Decline means
	// nothing to POST /notifications). It must be safe for concurrent use.
	Decide func(Attempt) Decision
}

// DefaultSlowDelay is Faults.SlowDelay's default.
const DefaultSlowDelay = 2 * time.Second

// Routes, as Attempt.Route names them.
const (
	RouteCharges       = "POST /charges"
	RouteNotifications = "POST /notifications"
)

// Attempt is one HTTP arrival, as Faults.Decide sees it.
type Attempt struct {
	// Route is RouteCharges or RouteNotifications.
	Route string
	// Key is the Idempotency-Key header as received ("" when absent).
	Key string
	// N numbers the route's arrivals in this Service, from 1.
	N uint64
}

// Decision is what the provider does to one arrival.
type Decision struct {
	// Fail answers 503 at once: nothing is claimed, written or charged.
	Fail bool
	// Drop closes the connection instead of sending the first, committed answer.
	Drop bool
	// Delay holds the answer back this long (after the commit).
	Delay time.Duration
	// Decline refuses the card: 402, committed.
	Decline bool
}

// ErrInvalidFaults is returned by New when a fault fraction is outside 0..1 or a delay is
// negative.
var ErrInvalidFaults = errors.New("paysvc: invalid faults")

func (f Faults) validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{
		{"FailBeforeCharge", f.FailBeforeCharge}, {"DropAfterCommit", f.DropAfterCommit},
		{"Slow", f.Slow}, {"Decline", f.Decline}, {"NotifyFail", f.NotifyFail},
	} {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 1 {
			return fmt.Errorf("%w: %s = %v, want 0..1", ErrInvalidFaults, p.name, p.v)
		}
	}
	if f.SlowDelay < 0 {
		return fmt.Errorf("%w: SlowDelay = %v is negative", ErrInvalidFaults, f.SlowDelay)
	}
	return nil
}

// decide returns the Decision for a.
func (f Faults) decide(a Attempt) Decision {
	if f.Decide != nil {
		return f.Decide(a)
	}
	if a.Route == RouteNotifications {
		return Decision{Fail: f.draw(a.N, 5) < f.NotifyFail}
	}
	d := Decision{
		Fail:    f.draw(a.N, 1) < f.FailBeforeCharge,
		Drop:    f.draw(a.N, 2) < f.DropAfterCommit,
		Decline: unit(mix(f.Seed^0x6465636c696e65^fnv64(a.Key))) < f.Decline,
	}
	if f.draw(a.N, 3) < f.Slow {
		d.Delay = f.SlowDelay
		if d.Delay == 0 {
			d.Delay = DefaultSlowDelay
		}
	}
	return d
}

// draw is a uniform number in [0, 1) for arrival n and one fault (salt), so that the faults
// are independent of each other.
func (f Faults) draw(n, salt uint64) float64 {
	return unit(mix(f.Seed + n*0x9e3779b97f4a7c15 + salt*0xbf58476d1ce4e5b9))
}

// mix is splitmix64's finaliser: a bijection that scatters nearby inputs.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func unit(z uint64) float64 { return float64(z>>11) / (1 << 53) }

func fnv64(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}
