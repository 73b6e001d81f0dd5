package delivery

import "errors"

// Outcomes callers branch on; errors returned by this package wrap them (test with errors.Is).
var (
	// ErrInvalidMessage means EnqueueTx refused a Message (bad URL, key, header or method)
	// without inserting anything.
	ErrInvalidMessage = errors.New("delivery: invalid message")
	// ErrInvalidConfig means New or Migrate refused a Config.
	ErrInvalidConfig = errors.New("delivery: invalid config")
	// ErrNotFound means no message of this package has the given id.
	ErrNotFound = errors.New("delivery: message not found")
	// ErrNotDead means Redrive was asked to re-drive a message that is not dead: it is
	// delivered, or still pending, or being delivered right now.
	ErrNotDead = errors.New("delivery: message is not dead")
)
