package pessimistic

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/pgonce/pgonce/internal/inputerr"
)

// ErrStaleToken means a fencing token lower than one already recorded for the resource was
// presented: the holder lost its lease and someone newer has written. Nothing was written.
var ErrStaleToken = errors.New("pessimistic: stale fencing token")

// ErrInvalidFence reports a bad resource name or token; returned before any SQL runs.
var ErrInvalidFence = errors.New("pessimistic: invalid fence")

// MaxResourceLen bounds fence resource names (bytes of UTF-8); a CHECK constraint agrees.
const MaxResourceLen = 512

// StaleTokenError is the error Fence returns for a stale token; errors.Is(err, ErrStaleToken).
type StaleTokenError struct {
	Resource string
	Token    int64 // the token presented
	Current  int64 // the highest token recorded for Resource
}

// Error says which token was refused for which resource.
func (e *StaleTokenError) Error() string {
	return fmt.Sprintf("pessimistic: stale fencing token %d for %q (current %d)", e.Token, e.Resource, e.Current)
}

// Is makes errors.Is(err, ErrStaleToken) true.
func (e *StaleTokenError) Is(target error) bool { return target == ErrStaleToken }

const (
	sqlFence = `/* pgonce:fence */ INSERT INTO fences AS f (resource, token) VALUES ($1, $2)
ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token, updated_at = now()
WHERE f.token <= EXCLUDED.token
RETURNING true`
	sqlFenceCurrent = `/* pgonce:fence_current */ SELECT token FROM fences WHERE resource = $1`
)

// Fence admits a write to resource by the holder of token, inside tx: it records token as the
// resource's highest if no higher token has been recorded (an equal token is admitted, so a
// holder may write several times), and otherwise returns a *StaleTokenError and records
// nothing. Do the protected write in the same tx after Fence; when tx commits, the write and
// the token commit together.
//
// The fences table is found through search_path, like the tables of the caller's own
// statements in the same transaction: when the migrations put it in a schema of its own
// (migrations.Config.Schema), put that schema on the connections' search_path. (dedupe, whose
// SQL runs on its own, takes Options.Schema instead.)
//
// Fence locks the resource's fences row until tx ends, so fenced writers of one resource run
// one after another, and a stale holder that waited behind a newer one is refused once the
// newer commits. Cost: one statement (two when the token is stale). Tokens come from any
// strictly increasing source: redisguard lock tokens, or a PostgreSQL sequence.
func Fence(ctx context.Context, tx pgx.Tx, resource string, token int64) error {
	if err := validateFence(resource, token); err != nil {
		return err
	}
	if tx == nil {
		return fmt.Errorf("%w: nil transaction", ErrInvalidFence)
	}
	var ok bool
	err := tx.QueryRow(ctx, sqlFence, resource, token).Scan(&ok)
	if err == nil {
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("pessimistic: fence %q: %w", resource, err)
	}
	stale := &StaleTokenError{Resource: resource, Token: token}
	if err := tx.QueryRow(ctx, sqlFenceCurrent, resource).Scan(&stale.Current); err != nil {
		return errors.Join(stale, err)
	}
	return stale
}

// FencedWrite runs write in a new transaction on db after admitting token with Fence, and
// commits. A stale token returns a *StaleTokenError and write does not run; an error from
// write rolls everything back, including the recorded token.
func FencedWrite(ctx context.Context, db Beginner, resource string, token int64, write func(ctx context.Context, tx pgx.Tx) error) error {
	if write == nil {
		return ErrNilFunc
	}
	if err := validateFence(resource, token); err != nil {
		return err
	}
	if inputerr.IsNil(db) {
		return ErrNilDB
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := Fence(ctx, tx, resource, token); err != nil {
			return err
		}
		return write(ctx, tx)
	})
}

func validateFence(resource string, token int64) error {
	switch {
	case resource == "":
		return fmt.Errorf("%w: empty resource", ErrInvalidFence)
	case len(resource) > MaxResourceLen:
		return fmt.Errorf("%w: resource is %d bytes, the limit is %d", ErrInvalidFence, len(resource), MaxResourceLen)
	case !utf8.ValidString(resource) || strings.IndexByte(resource, 0) >= 0:
		return fmt.Errorf("%w: resource must be UTF-8 without NUL", ErrInvalidFence)
	case token <= 0:
		return fmt.Errorf("%w: token %d is not positive", ErrInvalidFence, token)
	}
	return nil
}
