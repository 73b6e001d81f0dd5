package flow

import (
	"errors"

	"github.com/pgonce/pgonce/internal/inputerr"
)

// Outcomes callers branch on, besides dedupe.ErrInProgress (a concurrent request holds the
// lease; HTTP 409) and dedupe.ErrFingerprintMismatch (the key was used for another request;
// HTTP 422), which Run returns as dedupe.Do does. Every error from Run after its input checks
// is a *dedupe.KeyError naming the request; test with errors.Is.
var (
	// ErrUnfinished means the request stopped before its last step, keeping its recovery
	// point: a step failed with an indeterminate outcome (a call timed out, a connection
	// dropped, the other service answered 5xx), a local step's transaction failed, or ctx
	// ended. The lease was released, so a retry with the same key resumes at once, from the
	// step that did not finish, with the same outbound keys. Nothing is stored as the
	// answer: a call whose outcome is unknown may have taken effect, and only a re-drive
	// finds out. HTTP: 503 with Retry-After.
	ErrUnfinished = errors.New("flow: request unfinished; retry with the same key")

	// ErrLeaseLost means another holder took the request over (this one's lease ran out,
	// say while the process was paused) and the fence refused this holder's next change:
	// nothing this holder did since then was recorded, and its open transaction rolled back.
	// The request itself goes on under its new holder. HTTP: 409, as for ErrInProgress.
	ErrLeaseLost = errors.New("flow: lease lost to another holder")

	// ErrReconcile means the request's lease ran out past its re-drive window
	// (Options.RedriveWindow): re-driving a call to another service now could repeat it,
	// because the other service may have forgotten the outbound key. The request waits in
	// state reconcile for a person (Runner.ListReconcile, Resolve, Redrive). HTTP: 500.
	ErrReconcile = errors.New("flow: request needs reconciliation")

	// ErrUnknownStep means the request's recovery point names a step its flow no longer has
	// (the flow's steps changed while requests were running). Nothing ran.
	ErrUnknownStep = errors.New("flow: recovery point is not a step of the flow")

	// ErrNoResponse means the flow's last step finished without calling Finish: a flow must
	// end with a response. Its transaction rolled back; the request stays unfinished.
	ErrNoResponse = errors.New("flow: last step returned no response")

	// ErrNotFound means Resolve or Redrive found no request in state reconcile for the key.
	ErrNotFound = errors.New("flow: no such request awaiting reconciliation")
)

// ErrInvalid is matched by every input error (an invalid request, an unknown flow, a bad
// Flow or Options given to New): bad input is refused before any SQL runs, with nothing
// written, as in every pgonce package.
var ErrInvalid = errors.New("flow: invalid argument")

// ErrNilDB means New was given no database; it also matches ErrInvalid.
var ErrNilDB = inputerr.New(ErrInvalid, "flow: nil database handle")
