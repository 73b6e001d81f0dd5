package flow

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
)

// Flow is a named sequence of steps that one request runs under one idempotency key. Its
// Name is stored with each request, so that a later retry, or the completer in another
// process, resumes the request with the same steps: register the same flows, under the same
// names, in every process that serves or completes them.
type Flow struct {
	// Name identifies the flow in stored requests ("orders.create").
	Name string
	// Steps run in order, each once its predecessor's outcome is recorded. Step names are
	// unique within the flow and stored as recovery points: rename a step only when no request
	// still running names it.
	Steps []Step
}

// Step is one step of a Flow: local (Local) or a call to another service (Foreign).
type Step struct {
	name    string
	local   LocalFunc
	foreign ForeignFunc
}

// Name returns the step's name.
func (s Step) Name() string { return s.name }

// LocalFunc is a local step: every write goes through tx. It returns the step's output, which
// later steps read with State.Output, or an error made by Finish to end the request with a
// response. The writes, the output and the new recovery point commit together; any other
// error rolls all three back and leaves the request unfinished (ErrUnfinished), to be run
// again from this step by the next retry.
type LocalFunc func(ctx context.Context, tx pgx.Tx, s *State) ([]byte, error)

// ForeignFunc is a call to another service, made with no transaction open. It should send
// State.OutboundKey(step name) as the call's idempotency key, so that a re-drive of the
// request repeats the call with the same key and the other service answers it once.
//
// It returns the call's output when the outcome is known and the request should go on (a
// charge id), an error made by Finish when the outcome is definite and ends the request (a
// declined card, when no compensation is needed), and any other error when the outcome is
// unknown: a timeout, a dropped connection, a 5xx. Such an error must not be turned into a
// stored answer, since the call may have taken effect; the request stays unfinished with its
// recovery point before this step, and a retry makes the same call again with the same key.
// A definite refusal that later steps must compensate for (release reserved stock) is an
// output like any other ({"declined": true}), for the next local step to act on.
type ForeignFunc func(ctx context.Context, s *State) ([]byte, error)

// Local returns a local step.
func Local(name string, fn LocalFunc) Step { return Step{name: name, local: fn} }

// Foreign returns a step that calls another service.
func Foreign(name string, fn ForeignFunc) Step { return Step{name: name, foreign: fn} }

// Finish returns the error a step returns to end its request with resp: stored with the
// step's outcome (and, for a local step, with its writes) and replayed to every retry, as
// dedupe.Do replays. The last step of a flow must return it.
func Finish(resp dedupe.Response) error { return &finish{resp: resp} }

type finish struct {
	resp      dedupe.Response
	expiresAt time.Time // set once stored
}

func (f *finish) Error() string { return fmt.Sprintf("flow: finish with status %d", f.resp.Status) }

func finishOf(err error) (*finish, bool) {
	var f *finish
	ok := errors.As(err, &f)
	return f, ok
}

// State is what a step knows of its request. It is not safe for concurrent use; steps of
// one request run one after the other.
type State struct {
	// Scope and Key name the request.
	Scope, Key string
	// Input is the request's input as first given to Runner.Run (kept for re-drives).
	Input []byte
	// Fence is the fencing token of this run of the request: it grows with every take-over.
	// A step writing to a system that checks fencing tokens can pass it on.
	Fence int64
	// Attempt counts the runs of the request: 1 for the first, more after retries and
	// take-overs.
	Attempt int

	seed    []byte
	outputs map[string][]byte
}

// Output returns the recorded output of an earlier step of this request, and whether that
// step has finished.
func (s *State) Output(step string) ([]byte, bool) {
	out, ok := s.outputs[step]
	return out, ok
}

// OutboundKey returns the idempotency key to send with step's call to another service:
// "pgonce_" and 32 base64url characters of HMAC-SHA256(seed, scope, key, step), where seed is
// 32 random bytes drawn when the request was first claimed and stored with it. It is the same
// on every re-drive of this request and, the seed being secret and random, never the same for
// another request, nor guessable from the client's key.
func (s *State) OutboundKey(step string) string {
	m := hmac.New(sha256.New, s.seed)
	m.Write([]byte(s.Scope))
	m.Write([]byte{0})
	m.Write([]byte(s.Key))
	m.Write([]byte{0})
	m.Write([]byte(step))
	return "pgonce_" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}
