package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// Client enqueues messages in the caller's transactions and, once started, delivers them at
// least once over HTTP. EnqueueTx writes to a narrow outbox table; a started Client forwards
// committed messages to River (one queue, one job kind), whose workers send each message
// with its Idempotency-Key and sort the answers:
//
//	2xx                           delivered
//	408, 425, 429, 5xx, no answer retried (Retry-After honoured, else jittered backoff),
//	                              up to MaxAttempts, then dead
//	any other status              dead at once (River's cancelled state)
//
// Dead messages are listed by ListDead and re-driven by Redrive. A message whose worker was
// stopped is sent again at once; one whose process was killed, after RescueAfter. Every
// send of a message carries the same key, so a receiver that deduplicates on it (dedupehttp)
// applies each message exactly once.
//
// Ordering: a message with an OrderingKey is held (snoozed, which does not count as an
// attempt) while an earlier message with the same ordering key is still pending, retrying
// or in flight; a dead one no longer holds the key (as in SQS FIFO queues, whose message
// groups resume once a message goes to the dead-letter queue). Cost: one indexed query per
// attempt of an ordered message, and a held message waits OrderingRecheck, doubling up to a
// second, or until the earlier one's scheduled retry.
//
// A Client is safe for concurrent use.
type Client struct {
	river   *river.Client[pgx.Tx]
	lockKey int64 // forwardLockKey
	// stopForward stops the forwarder goroutine; forwarded is closed when it returned.
	mu          sync.Mutex
	stopForward context.CancelFunc
	forwarded   chan struct{}
	pool        *pgxpool.Pool
	cfg         Config
	w           *worker
	sql         statements
}

// New returns a Client over pool for cfg (nil: defaults), or an error wrapping
// ErrInvalidConfig. It does not touch the database; run Migrate first.
//
// pool carries the Client's own transactions (forwarding, fetching, completing, Redrive),
// not EnqueueTx's, which run in the caller's transaction. Giving it connections with
// synchronous_commit = off (RuntimeParams, or a role setting behind PgBouncer) spares each
// of them a WAL flush and is safe: a crash can lose only whole recent transitions, which puts
// messages back to be sent again with the same key. It raised delivery throughput by half on
// this project's benchmark (README, Delivery).
func New(pool *pgxpool.Pool, cfg *Config) (*Client, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrInvalidConfig)
	}
	c := &Client{pool: pool}
	var err error
	if c.cfg, err = cfg.withDefaults(); err != nil {
		return nil, err
	}
	c.sql = newStatements(c.cfg.Schema)
	c.lockKey = forwardLockKey(c.cfg.Schema)
	c.w = &worker{c: c}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, c.w); err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	c.river, err = river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema:                      c.cfg.Schema,
		Queues:                      map[string]river.QueueConfig{queueName: {MaxWorkers: c.cfg.Workers}},
		Workers:                     workers,
		MaxAttempts:                 c.cfg.MaxAttempts,
		JobTimeout:                  c.cfg.RequestTimeout,
		RescueStuckJobsAfter:        c.cfg.RescueAfter,
		PollOnly:                    c.cfg.PollOnly,
		FetchCooldown:               c.cfg.FetchCooldown,
		FetchPollInterval:           c.cfg.FetchPollInterval,
		CancelledJobRetentionPeriod: c.cfg.DeadRetention,
		DiscardedJobRetentionPeriod: c.cfg.DeadRetention,
		Logger:                      c.cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return c, nil
}

// Start starts delivering in background goroutines and returns. Cancelling ctx stops the
// Client abruptly, as Stop does once its own context is done. Start on a started Client
// does nothing.
func (c *Client) Start(ctx context.Context) error {
	if err := c.river.Start(ctx); err != nil {
		return fmt.Errorf("delivery: start: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopForward == nil {
		fctx, cancel := context.WithCancel(ctx)
		c.stopForward, c.forwarded = cancel, make(chan struct{})
		go func() {
			defer close(c.forwarded)
			c.forward(fctx)
		}()
	}
	return nil
}

// stopForwarder stops the forwarder and waits for it.
func (c *Client) stopForwarder() {
	c.mu.Lock()
	stop, done := c.stopForward, c.forwarded
	c.stopForward = nil
	c.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// Stop stops fetching messages and waits for deliveries in flight until ctx is done; then it
// cancels them (each goes back to the queue without the attempt being counted, and is sent
// again with the same key) and waits, at most StopGrace more, for the workers to return.
// When Stop returns nil no goroutine of the Client is left. Stop on a Client that was never
// started returns nil.
func (c *Client) Stop(ctx context.Context) error {
	c.stopForwarder() // returns within one forwarding transaction
	err := c.river.Stop(ctx)
	if err == nil || !errors.Is(err, ctx.Err()) {
		return err
	}
	hard, cancel := context.WithTimeout(context.WithoutCancel(ctx), StopGrace)
	defer cancel()
	if err := c.river.StopAndCancel(hard); err != nil {
		return fmt.Errorf("delivery: stop: workers did not return within %v of being cancelled: %w", StopGrace, err)
	}
	return nil
}

// StopGrace is how long Stop waits for cancelled deliveries to return.
const StopGrace = 10 * time.Second
