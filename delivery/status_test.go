package delivery

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestClassify(t *testing.T) {
	for status, want := range map[int]Class{
		0: Retry, 100: Dead, 200: Delivered, 201: Delivered, 204: Delivered, 299: Delivered,
		301: Dead, 303: Dead, 400: Dead, 401: Dead, 404: Dead, 409: Dead, 422: Dead,
		408: Retry, 425: Retry, 429: Retry, 500: Retry, 502: Retry, 503: Retry, 599: Retry, 600: Dead,
	} {
		assert.Equal(t, want, Classify(status), "status %d", status)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":      0,
		"0":     0,
		"-5":    0,
		"1":     time.Second,
		" 120 ": 2 * time.Minute,
		"soon":  0,
		now.Add(90 * time.Second).Format(http.TimeFormat):  90 * time.Second,
		now.Add(-90 * time.Second).Format(http.TimeFormat): 0,
		"99999999999999": 365 * 24 * time.Hour,
	} {
		assert.Equal(t, want, parseRetryAfter(in, now), "Retry-After %q", in)
	}
}

func TestKeyHeader(t *testing.T) {
	assert.Equal(t, "order-1", keyHeader("order-1"))
	assert.Equal(t, `"a b"`, keyHeader("a b"))
	assert.Equal(t, `"q\"\\"`, keyHeader(`q"\`))
}
