package dedupe

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// BodyCodec transforms response bodies on their way into the dedupe table and back out of it,
// for example to encrypt personal data at rest. Seal runs on the first execution, inside its
// transaction (an error rolls it back); Open runs on every replay (an error fails the replay,
// nothing runs). Headers are stored as they are: keep personal data out of the replayed
// headers (by default only Content-Type and Location are stored).
type BodyCodec interface {
	Seal(scope, key string, body []byte) ([]byte, error)
	Open(scope, key string, stored []byte) ([]byte, error)
}

// ErrBodyCodec wraps failures of Options.BodyCodec.
var ErrBodyCodec = errors.New("dedupe: body codec")

// NewAESGCM returns a BodyCodec that encrypts bodies with AES-GCM under secret (16, 24 or 32
// bytes), with a random nonce per body and the scope and key as associated data, so a stored
// body cannot be moved to another key and decrypt. Each stored body grows by 28 bytes. Rotate
// secrets by deploying a codec that opens with the old secret and seals with the new one for
// at least the keys' TTL.
func NewAESGCM(secret []byte) (BodyCodec, error) {
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBodyCodec, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBodyCodec, err)
	}
	return aesGCM{aead}, nil
}

type aesGCM struct{ aead cipher.AEAD }

func associated(scope, key string) []byte {
	return []byte(fmt.Sprintf("%d:%s%s", len(scope), scope, key))
}

func (c aesGCM) Seal(scope, key string, body []byte) ([]byte, error) {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(body)+c.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return c.aead.Seal(nonce, nonce, body, associated(scope, key)), nil
}

func (c aesGCM) Open(scope, key string, stored []byte) ([]byte, error) {
	n := c.aead.NonceSize()
	if len(stored) < n {
		return nil, errors.New("stored body shorter than a nonce")
	}
	return c.aead.Open(nil, stored[:n], stored[n:], associated(scope, key))
}
