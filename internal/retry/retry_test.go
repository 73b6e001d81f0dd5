package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/pgonce/pgonce/internal/retry"
)

var errAgain = errors.New("again")

func retryable(err error) bool { return errors.Is(err, errAgain) }

func TestDoStopsAtSuccessOrRefusal(t *testing.T) {
	p := retry.Policy{MaxAttempts: 5, BaseDelay: time.Microsecond, MaxDelay: time.Microsecond}
	r, err := retry.Do(context.Background(), p, func(n int) error {
		if n < 3 {
			return errAgain
		}
		return nil
	}, retryable)
	assert.NoError(t, err)
	assert.Equal(t, retry.Result{Attempts: 3, Outcome: retry.Done}, r)

	other := errors.New("other")
	r, err = retry.Do(context.Background(), p, func(int) error { return other }, retryable)
	assert.ErrorIs(t, err, other)
	assert.Equal(t, retry.Result{Attempts: 1, Outcome: retry.Done}, r, "a refused error ends the loop at once")
}

func TestDoExhausts(t *testing.T) {
	p := retry.Policy{MaxAttempts: 4, BaseDelay: time.Microsecond, MaxDelay: time.Microsecond}
	r, err := retry.Do(context.Background(), p, func(int) error { return errAgain }, retryable)
	assert.ErrorIs(t, err, errAgain)
	assert.Equal(t, retry.Result{Attempts: 4, Outcome: retry.Exhausted}, r)
}

func TestDoHonoursContextWhileWaiting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := retry.Policy{MaxAttempts: 100, BaseDelay: time.Hour, MaxDelay: time.Hour}
	r, err := retry.Do(ctx, p, func(int) error { cancel(); return errAgain }, retryable)
	assert.ErrorIs(t, err, errAgain)
	assert.Equal(t, 1, r.Attempts)
	assert.Equal(t, retry.Cancelled, r.Outcome)
	assert.ErrorIs(t, r.CtxErr, context.Canceled)
}

func TestWithDefaults(t *testing.T) {
	assert.Equal(t, retry.Default, retry.Policy{}.WithDefaults(retry.Default))
	p := retry.Policy{MaxAttempts: 2}.WithDefaults(retry.Default)
	assert.Equal(t, retry.Policy{MaxAttempts: 2, BaseDelay: retry.DefaultBaseDelay, MaxDelay: retry.DefaultMaxDelay}, p)
}
