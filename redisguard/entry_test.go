package redisguard

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
)

func TestEntryRoundTrip(t *testing.T) {
	owner := newOwner()
	require.Len(t, owner, ownerLen)
	cases := []struct {
		name string
		fp   []byte
		resp *dedupe.Response
	}{
		{"no response", []byte("fp"), nil},
		{"empty", nil, &dedupe.Response{Body: []byte{}}},
		{"full", []byte{0, 1, 2, 255}, &dedupe.Response{
			Status: 201,
			Header: map[string][]string{"Content-Type": {"application/json"}, "Location": {"/a", "/b"}, "X-Empty": {""}},
			Body:   []byte(`{"id":1}` + "\x00\xff"),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := encodeCommitted(owner, c.fp, c.resp)
			require.Equal(t, byte(stateCommitted), v[0])
			require.Equal(t, owner, string(v[1:1+ownerLen]))
			fp, resp, err := decodeCommitted(v[1+ownerLen:])
			require.NoError(t, err)
			assert.Equal(t, string(c.fp), string(fp))
			if c.resp == nil {
				assert.Nil(t, resp)
				return
			}
			require.NotNil(t, resp)
			assert.Equal(t, c.resp.Status, resp.Status)
			assert.Equal(t, c.resp.Header, resp.Header)
			assert.Equal(t, string(c.resp.Body), string(resp.Body))
		})
	}
}

// Every truncation of a valid entry, and some garbage, is rejected rather than misread.
func TestEntryRejectsDamage(t *testing.T) {
	v := encodeCommitted(newOwner(), []byte("fingerprint"), &dedupe.Response{
		Status: 200, Header: map[string][]string{"A": {"b"}}, Body: nil,
	})[1+ownerLen:]
	for n := range len(v) {
		_, _, err := decodeCommitted(v[:n])
		assert.Error(t, err, "truncated to %d bytes", n)
	}
	for _, bad := range [][]byte{{2}, {1, 0, 2}, {1, 0, 0, 'x'}, {1, 0, 1, 0xe8, 0x07}} {
		_, _, err := decodeCommitted(bad)
		assert.Error(t, err, "%x", bad)
	}
}

func TestLockKeysShareHashTag(t *testing.T) {
	l, err := newLocker([]Client{redis.NewClient(&redis.Options{})}, nil)
	require.NoError(t, err)
	for _, key := range []string{"report", "a}b", "{x", "x{y}z", "résumé"} {
		ks := l.keys(key)
		assert.Equal(t, hashTag(ks[0]), hashTag(ks[1]), key)
		assert.NotEmpty(t, hashTag(ks[0]), key)
	}
}

// hashTag is Redis Cluster's rule: the part between the first '{' and the next '}', when
// not empty; else the whole key.
func hashTag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j == i+1 {
						return key
					}
					return key[i+1 : j]
				}
			}
			return key
		}
	}
	return key
}
