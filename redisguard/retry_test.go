package redisguard

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRetryStrategies(t *testing.T) {
	assert.Zero(t, NoRetry()(1))
	assert.Equal(t, 5*time.Millisecond, LinearRetry(5*time.Millisecond)(7))
	exp := ExponentialRetry(10*time.Millisecond, 80*time.Millisecond)
	for attempt, step := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 80, 9: 80} {
		step *= time.Millisecond
		for range 20 {
			d := exp(attempt)
			assert.GreaterOrEqual(t, d, step/2, "attempt %d", attempt)
			assert.LessOrEqual(t, d, step, "attempt %d", attempt)
		}
	}
	limited := LimitRetry(LinearRetry(time.Millisecond), 2)
	assert.Equal(t, time.Millisecond, limited(2))
	assert.Zero(t, limited(3))
}
