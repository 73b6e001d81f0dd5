package flow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgonce/pgonce/internal/inputerr"
)

// DB is what a Runner needs of the database: *pgxpool.Pool satisfies it. Each step runs in a
// short transaction of its own, or none, so the Runner holds a connection only while a
// statement or a local step runs, never across a call to another service.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Options configures a Runner. The zero value (or a nil *Options) gives the defaults noted
// on each field.
type Options struct {
	// Schema is the schema of flow_requests and flow_steps (migrations.Config.Schema);
	// default "", found through search_path.
	Schema string

	// Lease is how long a holder may work on a request without renewing its lease; default
	// 30s. A holder that dies is taken over by the next retry or the completer once it runs
	// out; every recorded step renews it.
	Lease time.Duration
	// Heartbeat is how often a running request renews its lease while a step runs; default
	// Lease/3. Negative turns the heartbeat off, so that a step longer than Lease loses the
	// request to a take-over (tests use it to stand for a paused process).
	Heartbeat time.Duration

	// LockWait bounds how long Run waits for a concurrent request holding the same key to
	// finish, polling its row; default 0, ErrInProgress at once. The holder keeps no
	// transaction open, so there is no lock to wait on.
	LockWait time.Duration

	// RedriveWindow is how long after its first claim a request whose holder went away is
	// still re-driven, by a retry or the completer; past it, it goes to reconciliation
	// (ErrReconcile). Keep it at or below the shortest time the services you call remember
	// an idempotency key (Stripe: at least 24h): a re-drive after they forgot the key would
	// repeat the call. Default 23h.
	RedriveWindow time.Duration

	// TTL is how long a finished request is remembered, counted from its first claim, and
	// never less than RedriveWindow; default 24h. After it the key counts as new.
	TTL time.Duration

	// MaxResponseBytes bounds the stored response (body plus header names and values);
	// default 1 MiB. A larger Finish leaves the request unfinished.
	MaxResponseBytes int

	// OnReconcile, when set, is called once for each request that Run or the completer moves
	// to reconciliation. It runs on the caller's goroutine: keep it short (alert, enqueue).
	OnReconcile func(ctx context.Context, p Pending)
}

// Defaults of Options.
const (
	DefaultLease            = 30 * time.Second
	DefaultRedriveWindow    = 23 * time.Hour
	DefaultTTL              = 24 * time.Hour
	DefaultMaxResponseBytes = 1 << 20
)

// Runner runs phased requests. It holds no connection and is safe for concurrent use;
// create one per process with every flow the process serves or completes.
type Runner struct {
	db    DB
	opts  Options
	q     queries
	flows map[string]*Flow
	names []string
	hooks hooks
}

// hooks let the package's own tests stand in for faults that cannot be produced on demand.
type hooks struct {
	// afterRecord runs after a foreign step's record committed, and its error replaces the
	// commit's result: a lost commit acknowledgement.
	afterRecord func(step string) error
	// crashAfter, when it returns true for a step whose outcome committed, makes drive
	// return errCrashed at once, leaving the lease as a process that died would: held
	// until it runs out.
	crashAfter func(step string) bool
}

var errCrashed = errors.New("flow: test crash")

// New returns a Runner for flows on db. It refuses, with ErrInvalid, a flow without a name or
// steps, two flows with one name, a step without a name or function, two steps with one name
// in a flow, and negative durations.
func New(db DB, flows []Flow, opts *Options) (*Runner, error) {
	if inputerr.IsNil(db) {
		return nil, ErrNilDB
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Lease < 0 || o.LockWait < 0 || o.RedriveWindow < 0 || o.TTL < 0 || o.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("%w: negative duration or limit in Options", ErrInvalid)
	}
	if o.Lease == 0 {
		o.Lease = DefaultLease
	}
	if o.Lease < time.Millisecond {
		return nil, fmt.Errorf("%w: Lease %v is under a millisecond", ErrInvalid, o.Lease)
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = o.Lease / 3
	}
	if o.Heartbeat >= o.Lease {
		return nil, fmt.Errorf("%w: Heartbeat %v is not shorter than Lease %v", ErrInvalid, o.Heartbeat, o.Lease)
	}
	if o.RedriveWindow == 0 {
		o.RedriveWindow = DefaultRedriveWindow
	}
	if o.TTL == 0 {
		o.TTL = max(DefaultTTL, o.RedriveWindow)
	}
	if o.TTL < o.RedriveWindow {
		return nil, fmt.Errorf("%w: TTL %v is shorter than RedriveWindow %v", ErrInvalid, o.TTL, o.RedriveWindow)
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	r := &Runner{db: db, opts: o, q: newQueries(o.Schema), flows: map[string]*Flow{}}
	for i := range flows {
		f := flows[i]
		if err := validateFlow(f); err != nil {
			return nil, err
		}
		if _, dup := r.flows[f.Name]; dup {
			return nil, fmt.Errorf("%w: two flows named %q", ErrInvalid, f.Name)
		}
		f.Steps = append([]Step(nil), f.Steps...) // the caller's slice may change later
		r.flows[f.Name] = &f
		r.names = append(r.names, f.Name)
	}
	return r, nil
}

func validateFlow(f Flow) error {
	if f.Name == "" || len(f.Steps) == 0 {
		return fmt.Errorf("%w: a flow needs a name and at least one step (flow %q)", ErrInvalid, f.Name)
	}
	seen := map[string]bool{}
	for i, s := range f.Steps {
		switch {
		case s.name == "":
			return fmt.Errorf("%w: flow %q: step %d has no name", ErrInvalid, f.Name, i)
		case (s.local == nil) == (s.foreign == nil):
			return fmt.Errorf("%w: flow %q: step %q has no function (make steps with Local or Foreign)", ErrInvalid, f.Name, s.name)
		case seen[s.name]:
			return fmt.Errorf("%w: flow %q: two steps named %q", ErrInvalid, f.Name, s.name)
		}
		seen[s.name] = true
	}
	return nil
}

func micros(d time.Duration) int64 { return d.Microseconds() }
