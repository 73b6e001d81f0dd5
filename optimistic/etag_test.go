package optimistic_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pgonce/pgonce/optimistic"
)

func TestETagRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 42, 1 << 62} {
		got, ok := optimistic.IfMatch(http.Header{"If-Match": {optimistic.ETag(v)}})
		assert.True(t, ok)
		assert.Equal(t, v, got)
	}
	for _, h := range []string{"", "*", `"v1", "v2"`, `W/"v1"`, `"1"`, `"vx"`, `"v"`} {
		_, ok := optimistic.IfMatch(http.Header{"If-Match": {h}})
		assert.False(t, ok, h)
	}
	assert.Equal(t, 404, optimistic.HTTPStatus(fmt.Errorf("wrapped: %w", optimistic.ErrNotFound)))
	assert.Zero(t, optimistic.HTTPStatus(fmt.Errorf("other")))
}
