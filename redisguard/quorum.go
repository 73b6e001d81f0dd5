package redisguard

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// NewQuorumLocker returns a Locker over independent Redis nodes (separate servers, not
// replicas of one another and not one cluster), using the Redlock algorithm: Obtain runs the
// obtain script on every node in parallel, each call bounded by LockerOptions.Timeout, and
// succeeds when a majority (len(clients)/2+1) locked the key and the validity left,
// TTL − elapsed − drift, is positive; otherwise it releases what it took, everywhere. Refresh
// needs a majority too; Release runs on every node. Use an odd number of nodes, 3 or 5.
//
// What it guarantees, assuming bounded clock drift between the nodes and this process, and
// nodes that do not lose keys: while one owner's lock is valid (Lock.Expiry in the future), no
// other owner can obtain a majority; it keeps working while a minority of nodes is down or
// slow. With a majority down, Obtain fails with ErrNotObtained wrapping the nodes' errors.
//
// What it does not guarantee: safety under pauses. A holder paused (GC, swap, a slow network)
// past Lock.Expiry still acts as if it held the lock while another owner holds it; and a node
// that restarts without persistence forgets locks, so one restart can hand out a lock twice
// (restart nodes only after the longest TTL has passed, or with AOF fsync=always). Clocks
// that jump break the validity computation. So, as with a single node, every write the lock
// protects must be fenced: checked in PostgreSQL against Lock.Token (pessimistic.Fence).
//
// Fencing tokens in quorum mode: each node keeps its own counter. Obtain takes the largest of
// the majority's values as the hold's token and, when the values differ, raises every node of
// the majority to it (one more parallel round trip) before returning; if that fails the
// attempt is undone. Any two majorities share a node, so the next hold sees a counter at
// least this token on that node and gets a larger one: tokens increase from hold to hold
// under the same assumptions as the lock itself, and a node that lost its counter is covered
// by the server-clock floor (see Locker.Obtain).
func NewQuorumLocker(clients []Client, opts *LockerOptions) (*Locker, error) {
	if len(clients) == 0 {
		return nil, fmt.Errorf("%w: no clients", ErrInvalid)
	}
	return newLocker(clients, opts)
}

// reply is one node's answer in a round.
type reply struct {
	asked bool // false for nodes a round left out
	v     any
	err   error
}

// round calls fn on every node in parallel, each call bounded by the Locker's timeout for
// ttl, and waits for all of them: no call outlives the round.
func (l *Locker) round(ctx context.Context, ttl time.Duration, fn func(context.Context, Client) (any, error)) []reply {
	ctx, cancel := context.WithTimeout(ctx, l.timeout(ttl))
	defer cancel()
	all := make([]int, len(l.nodes))
	for i := range all {
		all[i] = i
	}
	return l.roundOn(ctx, all, fn)
}

// roundOn calls fn on the given nodes in parallel under ctx and waits for all; replies are
// indexed by node (nodes not asked get a zero reply).
func (l *Locker) roundOn(ctx context.Context, nodes []int, fn func(context.Context, Client) (any, error)) []reply {
	replies := make([]reply, len(l.nodes))
	if len(nodes) == 1 { // a single node needs no goroutine
		i := nodes[0]
		replies[i].asked = true
		replies[i].v, replies[i].err = fn(ctx, l.nodes[i])
		return replies
	}
	var wg sync.WaitGroup
	for _, i := range nodes {
		replies[i].asked = true
		wg.Go(func() { replies[i].v, replies[i].err = fn(ctx, l.nodes[i]) })
	}
	wg.Wait()
	return replies
}

// raise makes every node in got record token as the hold's token and raise its counter to
// it; it reports whether all of them did (the lock still ours on each).
func (l *Locker) raise(ctx context.Context, keys []string, owner string, token int64, ttl time.Duration, got []int) bool {
	ctx, cancel := context.WithTimeout(ctx, l.timeout(ttl))
	defer cancel()
	ok, err := l.count(l.roundOn(ctx, got, func(ctx context.Context, c Client) (any, error) {
		return lockRaise.Run(ctx, c, keys, owner, token).Result()
	}))
	return err == nil && ok == len(got)
}
