package redisguard

import (
	"time"

	"github.com/pgonce/pgonce/internal/backoff"
)

// RetryStrategy says how long Obtain waits before attempt number attempt+1, after attempt
// number attempt (1 for the first) found the lock taken; zero or less means give up. It is a
// plain function with no state, so one strategy can be shared by any number of calls. However
// long the strategy would go on, Obtain stops when its context is done.
type RetryStrategy func(attempt int) time.Duration

// NoRetry makes Obtain try once (the default).
func NoRetry() RetryStrategy { return func(int) time.Duration { return 0 } }

// LinearRetry retries every interval until the context is done.
func LinearRetry(interval time.Duration) RetryStrategy {
	return func(int) time.Duration { return interval }
}

// ExponentialRetry retries after waits that double from base up to max, each with random
// jitter (a random half of the step is kept), until the context is done. Jitter keeps
// waiters that met at a held lock from retrying in lockstep.
func ExponentialRetry(base, max time.Duration) RetryStrategy {
	return func(attempt int) time.Duration {
		if base <= 0 {
			return 0
		}
		return max0(backoff.Delay(attempt, base, max))
	}
}

// LimitRetry stops s after n retries (n+1 attempts in all).
func LimitRetry(s RetryStrategy, n int) RetryStrategy {
	return func(attempt int) time.Duration {
		if attempt > n {
			return 0
		}
		return s(attempt)
	}
}

// max0 keeps a jittered wait positive, since zero means "give up".
func max0(d time.Duration) time.Duration { return max(d, time.Nanosecond) }
