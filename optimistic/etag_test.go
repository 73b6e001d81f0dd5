package optimistic_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pgonce/pgonce/optimistic"
)

func TestETagRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 42, -3, 1 << 62} {
		got, ok := optimistic.ParseETag(optimistic.ETag(v))
		assert.True(t, ok, v)
		assert.Equal(t, v, got)
	}
	assert.Equal(t, `"v7"`, optimistic.ETag(7))
	for _, tag := range []string{"", `"v"`, `"7"`, `W/"v7"`, `"v7`, `v7"`, `"vx"`, `"v+7"`, `"v07"`, `"v7 "`, `"v99999999999999999999"`} {
		_, ok := optimistic.ParseETag(tag)
		assert.False(t, ok, tag)
	}
}

func TestIfMatch(t *testing.T) {
	for _, c := range []struct {
		name    string
		lines   []string
		want    optimistic.Precondition
		matches []int64 // versions Check accepts among 1..9
	}{
		{name: "absent", want: optimistic.Precondition{}, matches: []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{name: "star", lines: []string{"*"}, want: optimistic.Precondition{Present: true, Any: true}, matches: []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{name: "one", lines: []string{`"v3"`}, want: optimistic.Precondition{Present: true, Versions: []int64{3}}, matches: []int64{3}},
		{name: "list", lines: []string{` "v3" ,"v5",, "v8"`}, want: optimistic.Precondition{Present: true, Versions: []int64{3, 5, 8}}, matches: []int64{3, 5, 8}},
		{name: "two lines", lines: []string{`"v3"`, `"v4"`}, want: optimistic.Precondition{Present: true, Versions: []int64{3, 4}}, matches: []int64{3, 4}},
		// Present but naming nothing of ours: must fail, never count as "no header".
		{name: "weak", lines: []string{`W/"v3"`}, want: optimistic.Precondition{Present: true}},
		{name: "foreign", lines: []string{`"abc"`}, want: optimistic.Precondition{Present: true}},
		{name: "foreign with comma", lines: []string{`"a,"v3"`}, want: optimistic.Precondition{Present: true}},
		{name: "garbage", lines: []string{`v3, 3, "v`}, want: optimistic.Precondition{Present: true}},
		{name: "empty", lines: []string{""}, want: optimistic.Precondition{Present: true}},
		{name: "mixed", lines: []string{`W/"v2", "zz", "v6"`}, want: optimistic.Precondition{Present: true, Versions: []int64{6}}, matches: []int64{6}},
	} {
		h := http.Header{}
		for _, l := range c.lines {
			h.Add("If-Match", l)
		}
		p := optimistic.IfMatch(h)
		assert.Equal(t, c.want, p, c.name)
		for v := int64(1); v <= 9; v++ {
			err := p.Check(v)
			if assert.Equal(t, contains(c.matches, v), err == nil, "%s: version %d", c.name, v) && err != nil {
				assert.ErrorIs(t, err, optimistic.ErrStale, c.name)
				assert.Equal(t, http.StatusPreconditionFailed, optimistic.HTTPStatus(err), c.name)
			}
		}
	}
}

func contains(vs []int64, v int64) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func TestHTTPStatus(t *testing.T) {
	stale := &optimistic.StaleError{Table: `"t"`, ID: 1, Expected: 1, Current: 2}
	exhausted := fmt.Errorf("%w after 10 attempts: %w", optimistic.ErrExhausted, stale)
	for err, want := range map[error]int{
		stale:     http.StatusPreconditionFailed,
		exhausted: http.StatusConflict,
		fmt.Errorf("wrapped: %w", optimistic.ErrNotFound): http.StatusNotFound,
		errors.New("other"):   0,
		optimistic.ErrInvalid: 0,
	} {
		assert.Equal(t, want, optimistic.HTTPStatus(err), "%v", err)
	}
	assert.Zero(t, optimistic.HTTPStatus(nil))
	assert.ErrorIs(t, stale, optimistic.ErrStale)
	assert.NotErrorIs(t, stale, optimistic.ErrNotFound)
}
