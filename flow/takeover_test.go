package flow

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
)

// A process dies after a step committed: its lease stays until it runs out. Meanwhile a
// retry is told the request is in progress; afterwards the completer resumes it from its
// recovery point, without redoing the committed step.
func TestCrashBetweenStepsThenCompleterResumes(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	lease := 3 * time.Second // long enough that the retry below surely comes before it runs out
	dying := newRunner(t, pool, s, &Options{Lease: lease})
	dying.hooks.crashAfter = func(step string) bool { return step == "reserve" }
	ctx := context.Background()

	_, err := dying.Run(ctx, "shop", req("c"), []byte("input"))
	require.ErrorIs(t, err, errCrashed)
	survivor := newRunner(t, pool, s, &Options{Lease: lease})
	_, err = survivor.Run(ctx, "shop", req("c"), []byte("input"))
	assert.ErrorIs(t, err, dedupe.ErrInProgress, "the dead holder's lease is still live")
	cr, err := survivor.Complete(ctx, 10)
	require.NoError(t, err)
	assert.Zero(t, cr.Resumed, "nothing is due before the lease runs out")

	waitLeaseOut(t, pool, "c")
	cr, err = survivor.Complete(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, CompleteResult{Resumed: 1, Finished: 1}, cr)
	assert.EqualValues(t, 1, s.reserves.Load(), "the committed step was not redone")
	assert.EqualValues(t, 1, s.calls.Load())
	assert.EqualValues(t, 1, s.confirms.Load())
	assert.Equal(t, 2, count(t, pool, `SELECT confirmed_by FROM orders WHERE ref = 'c'`), "confirmed under the completer's fence")

	res, err := survivor.Run(ctx, "shop", req("c"), []byte("input"))
	require.NoError(t, err)
	assert.True(t, res.Replayed())
	assert.Equal(t, 201, res.Response.Status)
}

// The same, resumed by the client's retry instead of the completer.
func TestCrashBetweenStepsThenRetryResumes(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	r := newRunner(t, pool, s, &Options{Lease: 300 * time.Millisecond})
	r.hooks.crashAfter = func(step string) bool { return step == "charge" }
	ctx := context.Background()
	_, err := r.Run(ctx, "shop", req("c"), nil)
	require.ErrorIs(t, err, errCrashed)
	r.hooks.crashAfter = nil
	waitLeaseOut(t, pool, "c")
	res, err := r.Run(ctx, "shop", req("c"), nil)
	require.NoError(t, err)
	assert.False(t, res.Replayed(), "the retry ran the rest")
	assert.Equal(t, 2, res.Attempts)
	assert.EqualValues(t, 1, s.reserves.Load())
	assert.EqualValues(t, 1, s.calls.Load(), "the recorded call is not made again")
	assert.EqualValues(t, 1, s.confirms.Load())
}

// The commit recording a call's outcome succeeds but its acknowledgement is lost: the
// runner reads back its own record, and neither calls again nor records twice.
func TestLostCommitAckOnForeignRecord(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	r := newRunner(t, pool, s, nil)
	lost := 0
	r.hooks.afterRecord = func(step string) error {
		if step == "charge" && lost == 0 {
			lost++
			return errors.New("read tcp: connection reset by peer")
		}
		return nil
	}
	res, err := r.Run(context.Background(), "shop", req("ack"), nil)
	require.NoError(t, err)
	assert.Equal(t, 201, res.Response.Status)
	assert.Equal(t, 1, lost)
	assert.EqualValues(t, 1, s.calls.Load(), "told apart from a second execution: no second call")
	assert.Equal(t, 1, count(t, pool, `SELECT count(*) FROM flow_steps WHERE step = 'charge'`))
}

// A holder pauses (no heartbeat: a GC pause, a frozen VM) inside its last step until its
// lease runs out; the completer takes the request over and finishes it. When the paused
// holder wakes, the fence refuses its commit: its writes roll back, and the answer stored is
// the new holder's.
func TestPausedHolderIsFenced(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	s.pauseConfirm, s.resume = make(chan struct{}), make(chan struct{})
	lease := 300 * time.Millisecond
	paused := newRunner(t, pool, s, &Options{Lease: lease, Heartbeat: -1})
	ctx := context.Background()
	pausedDone := make(chan error, 1)
	go func() {
		_, err := paused.Run(ctx, "shop", req("p"), nil)
		pausedDone <- err
	}()
	<-s.pauseConfirm // paused inside confirm, its UPDATE done but not committed

	other := newShop()
	completer := newRunner(t, pool, other, &Options{Lease: 10 * time.Second})
	waitLeaseOut(t, pool, "p")
	// The completer's confirm waits on the paused holder's row lock on orders; release the
	// pause once the completer has taken the request (its fence is bumped).
	completed := make(chan CompleteResult, 1)
	go func() {
		cr, err := completer.Complete(ctx, 10)
		assert.NoError(t, err)
		completed <- cr
	}()
	require.Eventually(t, func() bool {
		return count(t, pool, `SELECT fence FROM flow_requests WHERE key = 'p'`) == 2
	}, 10*time.Second, 10*time.Millisecond)
	close(s.resume)
	err := <-pausedDone
	assert.ErrorIs(t, err, ErrLeaseLost)
	cr := <-completed
	assert.Equal(t, 1, cr.Finished)
	assert.Equal(t, 2, count(t, pool, `SELECT confirmed_by FROM orders WHERE ref = 'p'`), "only the new holder's write committed")
	assert.Equal(t, 2, count(t, pool, `SELECT fence FROM flow_steps WHERE step = 'confirm'`))
	assert.EqualValues(t, 1, other.confirms.Load())
	res, err := completer.Run(ctx, "shop", req("p"), nil)
	require.NoError(t, err)
	assert.True(t, res.Replayed())
}

// A heartbeat keeps the lease of a step that runs longer than the lease: no take-over.
func TestHeartbeatKeepsLease(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	// Renewed every 100ms, the 1s lease survives heartbeats delayed by a loaded machine.
	lease := time.Second
	s.callFn = func(ctx context.Context, _ string) error {
		select { // a slow provider: three leases long
		case <-time.After(3 * lease):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r := newRunner(t, pool, s, &Options{Lease: lease, Heartbeat: 100 * time.Millisecond})
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, "shop", req("hb"), nil)
		done <- err
	}()
	require.Eventually(t, func() bool { return s.calls.Load() == 1 }, 10*time.Second, 5*time.Millisecond)
	other := newRunner(t, pool, newShop(), &Options{Lease: lease})
	deadline := time.Now().Add(2 * lease)
	for time.Now().Before(deadline) {
		cr, err := other.Complete(ctx, 10)
		require.NoError(t, err)
		require.Zero(t, cr.Resumed, "the lease was renewed: nothing to take over")
		time.Sleep(lease / 4)
	}
	require.NoError(t, <-done)
	assert.EqualValues(t, 1, s.calls.Load())
}

// Past the re-drive window a request whose holder went away is not re-driven: it goes to
// reconciliation, once, and waits for Resolve or Redrive.
func TestRedriveWindow(t *testing.T) {
	pool := testDB(t)
	s := newShop()
	var mu sync.Mutex
	var told []Pending
	opts := &Options{Lease: 200 * time.Millisecond, RedriveWindow: 300 * time.Millisecond, OnReconcile: func(_ context.Context, p Pending) {
		mu.Lock()
		defer mu.Unlock()
		told = append(told, p)
	}}
	r := newRunner(t, pool, s, opts)
	r.hooks.crashAfter = func(step string) bool { return step == "reserve" }
	ctx := context.Background()
	for _, k := range []string{"late-retry", "late-completer"} {
		_, err := r.Run(ctx, "shop", req(k), nil)
		require.ErrorIs(t, err, errCrashed)
	}
	r.hooks.crashAfter = nil
	require.Eventually(t, func() bool {
		return count(t, pool, `SELECT count(*) FROM flow_requests WHERE redrive_until <= now() AND locked_until <= now()`) == 2
	}, 30*time.Second, 20*time.Millisecond)

	_, err := r.Run(ctx, "shop", req("late-retry"), nil)
	assert.ErrorIs(t, err, ErrReconcile)
	_, err = r.Run(ctx, "shop", req("late-retry"), nil)
	assert.ErrorIs(t, err, ErrReconcile, "still waiting for a person")
	cr, err := r.Complete(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, CompleteResult{Reconcile: 1}, cr)
	assert.EqualValues(t, 0, s.calls.Load(), "no call was re-driven past the window")

	mu.Lock()
	require.Len(t, told, 2, "OnReconcile once per request")
	assert.Equal(t, "reserve", told[0].RecoveryPoint)
	mu.Unlock()
	list, err := r.ListReconcile(ctx, 10)
	require.NoError(t, err)
	assert.Len(t, list, 2)

	// A person checked: late-retry never charged, answer it; late-completer may go on.
	require.NoError(t, r.Resolve(ctx, "orders.create", "late-retry", dedupe.Response{Status: 500, Body: []byte("refunded by support")}))
	assert.ErrorIs(t, r.Resolve(ctx, "orders.create", "late-retry", dedupe.Response{Status: 500}), ErrNotFound)
	res, err := r.Run(ctx, "shop", req("late-retry"), nil)
	require.NoError(t, err)
	assert.Equal(t, "refunded by support", string(res.Response.Body))
	require.NoError(t, r.Redrive(ctx, "orders.create", "late-completer"))
	cr, err = r.Complete(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, cr.Finished)
	assert.EqualValues(t, 1, s.calls.Load())
}
