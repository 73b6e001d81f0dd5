package paysvc

import (
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// These tests need no database.

func TestFaultsValidate(t *testing.T) {
	for _, f := range []Faults{
		{FailBeforeCharge: -0.1}, {DropAfterCommit: 1.1}, {Slow: math.NaN()}, {Decline: 2},
		{NotifyFail: -1}, {SlowDelay: -time.Second},
	} {
		assert.True(t, errors.Is(f.validate(), ErrInvalidFaults), "%+v", f)
	}
	assert.NoError(t, Faults{FailBeforeCharge: 1, DropAfterCommit: 0.5, Slow: 0, Decline: 1, NotifyFail: 1}.validate())
	_, err := New(Config{})
	assert.ErrorIs(t, err, ErrNoDB)
}

func TestFaultsDrawFractions(t *testing.T) {
	f := Faults{FailBeforeCharge: 0.1, DropAfterCommit: 0.2, Slow: 0.3, Decline: 0.25, NotifyFail: 0.4, Seed: 42}
	const n = 20000
	var fail, drop, slow, decline, notify int
	for i := uint64(1); i <= n; i++ {
		d := f.decide(Attempt{Route: RouteCharges, Key: "k" + strconv.FormatUint(i, 10), N: i})
		if d.Fail {
			fail++
		}
		if d.Drop {
			drop++
		}
		if d.Delay > 0 {
			slow++
			assert.Equal(t, DefaultSlowDelay, d.Delay)
		}
		if d.Decline {
			decline++
		}
		if f.decide(Attempt{Route: RouteNotifications, N: i}).Fail {
			notify++
		}
	}
	near := func(name string, got int, want float64) {
		assert.InDelta(t, want, float64(got)/n, 0.02, name)
	}
	near("fail", fail, 0.1)
	near("drop", drop, 0.2)
	near("slow", slow, 0.3)
	near("decline", decline, 0.25)
	near("notify", notify, 0.4)
}

func TestFaultsAreDeterministic(t *testing.T) {
	f := Faults{FailBeforeCharge: 0.5, DropAfterCommit: 0.5, Slow: 0.5, Decline: 0.5, Seed: 7}
	g := f
	g.Seed = 8
	differ := false
	for i := uint64(1); i <= 200; i++ {
		a := Attempt{Route: RouteCharges, Key: "key-" + strconv.FormatUint(i%10, 10), N: i}
		assert.Equal(t, f.decide(a), f.decide(a), "same seed, same arrival: same decision")
		differ = differ || f.decide(a) != g.decide(a)
		// Decline depends on the key alone: every attempt of a key agrees.
		b := a
		b.N += 1000
		assert.Equal(t, f.decide(a).Decline, f.decide(b).Decline)
	}
	assert.True(t, differ, "another seed, other decisions")
	assert.Equal(t, Decision{}, Faults{}.decide(Attempt{Route: RouteCharges, Key: "k", N: 1}))
	assert.Equal(t, Decision{Fail: true, Drop: true, Delay: DefaultSlowDelay, Decline: true},
		Faults{FailBeforeCharge: 1, DropAfterCommit: 1, Slow: 1, Decline: 1}.decide(Attempt{Route: RouteCharges, Key: "k", N: 1}))
}
