package backoff

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDelayGrowsWithinBounds(t *testing.T) {
	base, max := 10*time.Millisecond, 80*time.Millisecond
	for attempt, step := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 80, 5: 80, 30: 80} {
		step *= time.Millisecond
		for range 200 {
			d := Delay(attempt, base, max)
			assert.GreaterOrEqual(t, d, step/2, "attempt %d", attempt)
			assert.LessOrEqual(t, d, step, "attempt %d", attempt)
		}
	}
	assert.Zero(t, Delay(1, 0, time.Second))
	assert.Zero(t, Delay(0, time.Millisecond, time.Second))
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	assert.ErrorIs(t, Sleep(ctx, time.Hour), context.Canceled)
	assert.Less(t, time.Since(start), time.Second)
	assert.NoError(t, Sleep(context.Background(), time.Microsecond))
}

// A context cancelled before a short sleep always ends it with the context's error, even when
// the timer has fired too by the time Sleep looks (select alone picks between ready channels
// at random, and optimistic.Retry then ran one attempt more on a cancelled context).
func TestSleepCancelledBeatsShortTimer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 200 {
		assert.ErrorIs(t, Sleep(ctx, time.Nanosecond), context.Canceled)
	}
}
