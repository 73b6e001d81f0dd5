package pgerr

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
)

func TestCodeThroughWrapping(t *testing.T) {
	err := fmt.Errorf("outer: %w", &pgconn.PgError{Code: DeadlockDetected})
	assert.Equal(t, DeadlockDetected, Code(err))
	assert.True(t, Is(err, DeadlockDetected))
	assert.True(t, Retryable(err))
	assert.True(t, Retryable(&pgconn.PgError{Code: SerializationFailure}))
	assert.False(t, Retryable(&pgconn.PgError{Code: UniqueViolation}))
	assert.False(t, Retryable(errors.New("plain")))
	assert.Equal(t, "", Code(nil))
	assert.False(t, Is(nil, UniqueViolation))
}
