package flow

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
)

func TestRunThenReplay(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	r := newRunner(t, pool, s, nil)
	ctx := context.Background()

	first, err := r.Run(ctx, "shop", req("k1"), []byte(`{"sku":"mug"}`))
	require.NoError(t, err)
	assert.Equal(t, dedupe.SourceExecuted, first.Source)
	assert.Equal(t, 201, first.Response.Status)
	assert.Equal(t, 1, first.Attempts)
	assert.WithinDuration(t, time.Now().Add(DefaultTTL), first.ExpiresAt, time.Minute)

	again, err := r.Run(ctx, "shop", req("k1"), []byte(`{"sku":"mug"}`))
	require.NoError(t, err)
	assert.Equal(t, dedupe.SourcePostgres, again.Source)
	assert.True(t, again.Replayed())
	assert.Equal(t, first.Response, again.Response, "replayed byte for byte")

	other := req("k1")
	other.Fingerprint = []byte("another payload")
	_, err = r.Run(ctx, "shop", other, nil)
	assert.ErrorIs(t, err, dedupe.ErrFingerprintMismatch)
	var ke *dedupe.KeyError
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, "k1", ke.Key)

	assert.EqualValues(t, 1, s.reserves.Load())
	assert.EqualValues(t, 1, s.calls.Load())
	assert.EqualValues(t, 1, s.confirms.Load())
	assert.Equal(t, 1, count(t, pool, `SELECT count(*) FROM orders WHERE state = 'confirmed'`))
	assert.Equal(t, 3, count(t, pool, `SELECT count(*) FROM flow_steps`))
}

func TestOutboundKeys(t *testing.T) {
	a := &State{Scope: "s", Key: "k", seed: []byte("0123456789abcdef0123456789abcdef")}
	b := &State{Scope: "s", Key: "k", seed: []byte("fedcba9876543210fedcba9876543210")}
	assert.Equal(t, a.OutboundKey("charge"), a.OutboundKey("charge"), "stable for one request")
	assert.NotEqual(t, a.OutboundKey("charge"), a.OutboundKey("refund"), "one per step")
	assert.NotEqual(t, a.OutboundKey("charge"), b.OutboundKey("charge"), "another request (another seed) never gets it")
	assert.True(t, strings.HasPrefix(a.OutboundKey("charge"), "pgonce_"))
	assert.Len(t, a.OutboundKey("charge"), len("pgonce_")+32)
}

// A step whose call has an unknown outcome leaves the request unfinished, with its recovery
// point and without its lease: the next retry resumes at once, calls again with the same
// outbound key, and does not redo the local step before it.
func TestIndeterminateCallIsRedrivenWithTheSameKey(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	fail := true
	s.callFn = func(context.Context, string) error {
		if fail {
			return errors.New("provider: 502 bad gateway")
		}
		return nil
	}
	r := newRunner(t, pool, s, nil)
	ctx := context.Background()

	_, err := r.Run(ctx, "shop", req("k"), nil)
	require.ErrorIs(t, err, ErrUnfinished)
	assert.ErrorContains(t, err, "502")
	assert.Equal(t, 0, count(t, pool, `SELECT count(*) FROM flow_requests WHERE status IS NOT NULL`), "no answer stored")
	assert.Equal(t, 1, count(t, pool, `SELECT count(*) FROM flow_requests WHERE recovery_point = 'reserve' AND locked_until <= now()`), "lease given back")

	fail = false
	res, err := r.Run(ctx, "shop", req("k"), nil)
	require.NoError(t, err)
	assert.Equal(t, 201, res.Response.Status)
	assert.Equal(t, 2, res.Attempts)
	assert.EqualValues(t, 1, s.reserves.Load(), "the local step before the call ran once")
	assert.EqualValues(t, 2, s.calls.Load())
	require.Len(t, s.keys, 2)
	assert.Equal(t, s.keys[0], s.keys[1], "the re-drive sends the same outbound key")
	assert.Len(t, s.charges, 1)
}

// A definite outcome from a call ends the request with its response, stored and replayed.
func TestDefiniteOutcomeFinishes(t *testing.T) {
	pool := testDB(t)
	calls := 0
	f := Flow{Name: "pay", Steps: []Step{
		Foreign("charge", func(context.Context, *State) ([]byte, error) {
			calls++
			return nil, Finish(dedupe.Response{Status: 402, Body: []byte(`{"error":"card_declined"}`)})
		}),
		Local("never", func(context.Context, pgx.Tx, *State) ([]byte, error) { panic("not reached") }),
	}}
	r, err := New(pool, []Flow{f}, nil)
	require.NoError(t, err)
	for i := 0; i < 2; i++ {
		res, err := r.Run(context.Background(), "pay", req("d"), nil)
		require.NoError(t, err)
		assert.Equal(t, 402, res.Response.Status)
		assert.Equal(t, `{"error":"card_declined"}`, string(res.Response.Body))
		assert.Equal(t, i == 1, res.Replayed())
	}
	assert.Equal(t, 1, calls)
}

// A local step's error rolls its writes back and leaves the request unfinished; a flow whose
// last step gives no response is refused the same way.
func TestLocalStepErrorRollsBack(t *testing.T) {
	pool := testDB(t)
	f := Flow{Name: "bad", Steps: []Step{
		Local("write", func(ctx context.Context, tx pgx.Tx, st *State) ([]byte, error) {
			if _, err := tx.Exec(ctx, `INSERT INTO orders (ref, state) VALUES ($1, 'x')`, st.Key); err != nil {
				return nil, err
			}
			if st.Key == "fails" {
				return nil, errors.New("out of stock check failed")
			}
			return nil, nil // no Finish in the last step
		}),
	}}
	r, err := New(pool, []Flow{f}, nil)
	require.NoError(t, err)
	_, err = r.Run(context.Background(), "bad", req("fails"), nil)
	assert.ErrorIs(t, err, ErrUnfinished)
	_, err = r.Run(context.Background(), "bad", req("no-response"), nil)
	assert.ErrorIs(t, err, ErrUnfinished)
	assert.ErrorIs(t, err, ErrNoResponse)
	assert.Equal(t, 0, count(t, pool, `SELECT count(*) FROM orders`), "both rolled back")
	assert.Equal(t, 0, count(t, pool, `SELECT count(*) FROM flow_steps`))
}

// Duplicates released together: one runs each step once, the others are told the key is in
// progress (or, if they look after it finished, get its response).
func TestConcurrentDuplicates(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	s.pauseConfirm, s.resume = make(chan struct{}), make(chan struct{})
	r := newRunner(t, pool, s, nil)
	ctx := context.Background()

	firstDone := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, "shop", req("dup"), nil)
		firstDone <- err
	}()
	<-s.pauseConfirm // the first holds the lease, inside its last step

	const n = 8
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = r.Run(ctx, "shop", req("dup"), nil)
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		assert.ErrorIs(t, err, dedupe.ErrInProgress)
	}
	close(s.resume)
	require.NoError(t, <-firstDone)
	assert.EqualValues(t, 1, s.reserves.Load())
	assert.EqualValues(t, 1, s.calls.Load())
	assert.EqualValues(t, 1, s.confirms.Load())
}

// With LockWait, a duplicate waits for the holder and replays its response.
func TestLockWaitReplaysAfterHolder(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	s.pauseConfirm, s.resume = make(chan struct{}), make(chan struct{})
	r := newRunner(t, pool, s, &Options{LockWait: 20 * time.Second})
	ctx := context.Background()
	firstDone := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, "shop", req("w"), nil)
		firstDone <- err
	}()
	<-s.pauseConfirm
	dupDone := make(chan dedupe.Result, 1)
	go func() {
		res, err := r.Run(ctx, "shop", req("w"), nil)
		assert.NoError(t, err)
		dupDone <- res
	}()
	close(s.resume)
	require.NoError(t, <-firstDone)
	res := <-dupDone
	assert.True(t, res.Replayed())
	assert.Equal(t, 201, res.Response.Status)
	assert.EqualValues(t, 1, s.confirms.Load())
}

func TestNewValidates(t *testing.T) {
	pool := testDB(t)
	ok := Local("a", func(context.Context, pgx.Tx, *State) ([]byte, error) { return nil, nil })
	for name, c := range map[string]struct {
		flows []Flow
		opts  *Options
	}{
		"no name":        {[]Flow{{Steps: []Step{ok}}}, nil},
		"no steps":       {[]Flow{{Name: "f"}}, nil},
		"two flows":      {[]Flow{{Name: "f", Steps: []Step{ok}}, {Name: "f", Steps: []Step{ok}}}, nil},
		"two steps":      {[]Flow{{Name: "f", Steps: []Step{ok, ok}}}, nil},
		"zero step":      {[]Flow{{Name: "f", Steps: []Step{{}}}}, nil},
		"unnamed step":   {[]Flow{{Name: "f", Steps: []Step{Local("", ok.local)}}}, nil},
		"negative lease": {[]Flow{{Name: "f", Steps: []Step{ok}}}, &Options{Lease: -1}},
		"ttl < window":   {[]Flow{{Name: "f", Steps: []Step{ok}}}, &Options{RedriveWindow: time.Hour, TTL: time.Minute}},
		"heartbeat":      {[]Flow{{Name: "f", Steps: []Step{ok}}}, &Options{Lease: time.Second, Heartbeat: time.Second}},
	} {
		_, err := New(pool, c.flows, c.opts)
		assert.ErrorIs(t, err, ErrInvalid, name)
	}
	_, err := New(nil, nil, nil)
	assert.ErrorIs(t, err, ErrNilDB)
	r, err := New(pool, []Flow{{Name: "f", Steps: []Step{ok}}}, nil)
	require.NoError(t, err)
	_, err = r.Run(context.Background(), "nope", req("k"), nil)
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = r.Run(context.Background(), "f", dedupe.Request{Scope: "s"}, nil)
	assert.ErrorIs(t, err, ErrInvalid)
	assert.ErrorIs(t, err, dedupe.ErrInvalidKey)
	assert.Equal(t, 0, count(t, pool, `SELECT count(*) FROM flow_requests`))
}
