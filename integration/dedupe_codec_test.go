package integration_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
)

// Bodies are encrypted at rest, replayed in clear, and bound to their key.
func TestBodyCodecEncryptsAtRest(t *testing.T) {
	t.Parallel()
	db := harness.DB(t, nil)
	ctx := context.Background()
	codec, err := dedupe.NewAESGCM(bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	d := dedupe.New(&dedupe.Options{BodyCodec: codec})
	secret := []byte(`{"email":"ada@example.com"}`)
	respond := func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{Status: 201, Body: secret}, nil
	}
	for _, key := range []string{"a", "b"} {
		res, err := d.Do(ctx, db.Pool, dedupe.Request{Scope: "pii", Key: key}, respond)
		require.NoError(t, err)
		assert.Equal(t, secret, res.Response.Body, "the caller gets the plain body")
	}

	var stored []byte
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT body FROM dedupe_keys WHERE key = 'a'`).Scan(&stored))
	assert.NotContains(t, string(stored), "ada@example.com", "stored encrypted")
	assert.Len(t, stored, len(secret)+28)

	res, err := d.Do(ctx, db.Pool, dedupe.Request{Scope: "pii", Key: "a"}, respond)
	require.NoError(t, err)
	assert.True(t, res.Replayed())
	assert.Equal(t, secret, res.Response.Body, "replayed decrypted")

	_, err = dedupe.New(nil).Do(ctx, db.Pool, dedupe.Request{Scope: "pii", Key: "a"}, respond)
	require.NoError(t, err, "a deduper without the codec replays the raw stored bytes")

	// A body moved to another key does not open: the key is authenticated with it.
	_, err = db.Pool.Exec(ctx, `UPDATE dedupe_keys SET body = (SELECT body FROM dedupe_keys WHERE key = 'a') WHERE key = 'b'`)
	require.NoError(t, err)
	_, err = d.Do(ctx, db.Pool, dedupe.Request{Scope: "pii", Key: "b"}, respond)
	assert.ErrorIs(t, err, dedupe.ErrBodyCodec)

	_, err = dedupe.NewAESGCM([]byte("short"))
	assert.ErrorIs(t, err, dedupe.ErrBodyCodec)
}
