package pessimistic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/internal/inputerr"
	"github.com/pgonce/pgonce/internal/pgerr"
	"github.com/pgonce/pgonce/internal/retry"
)

// ErrDeadlock means PostgreSQL detected a deadlock (SQLSTATE 40P01) and aborted this
// transaction to break it. Rerunning the whole transaction is the cure: see RetryTx. RowLock.Row,
// RowLock.Query and XactLock return it wrapping the *pgconn.PgError; RetryTx when it gives up.
var ErrDeadlock = errors.New("pessimistic: deadlock detected")

// RetryOptions bounds RetryTx. A nil *RetryOptions, or a non-positive field, means the default.
type RetryOptions struct {
	MaxAttempts         int           // default 5 (the same defaults as dedupe.Options)
	BaseDelay, MaxDelay time.Duration // jittered exponential backoff between attempts; defaults 5ms, 500ms
	TxOptions           pgx.TxOptions // isolation level etc.; default the server's (READ COMMITTED)
}

// RetryTx runs fn in a new transaction on db and commits it, rerunning the whole transaction
// when PostgreSQL aborts it with a deadlock (40P01) or a serialization failure (40001): the
// two errors PostgreSQL documents as "retry the transaction". It makes at most MaxAttempts,
// sleeps a jittered backoff in between, stops when ctx is done (the error then matches
// ctx.Err() and the last attempt's error), and reports the attempts made.
//
// fn may run several times, each time in a fresh transaction; only the attempt that commits
// has effects in the database, so keep other effects (mail, HTTP calls) until RetryTx
// returns. Any other error from fn, BEGIN or COMMIT comes back at once. When the last attempt
// fails with a deadlock, the error wraps ErrDeadlock (and the *pgconn.PgError).
//
// db is a pool or a connection, not a pgx.Tx: a deadlock victim's transaction is aborted
// entire, so only its owner can run it again. Cost: per attempt, BEGIN, fn's statements and
// COMMIT (or ROLLBACK).
func RetryTx(ctx context.Context, db TxBeginner, opts *RetryOptions, fn func(ctx context.Context, tx pgx.Tx) error) (attempts int, err error) {
	if fn == nil {
		return 0, ErrNilFunc
	}
	if inputerr.IsNil(db) {
		return 0, ErrNilDB
	}
	var p retry.Policy
	var txOpts pgx.TxOptions
	if opts != nil {
		p = retry.Policy{MaxAttempts: opts.MaxAttempts, BaseDelay: opts.BaseDelay, MaxDelay: opts.MaxDelay}
		txOpts = opts.TxOptions
	}
	r, err := retry.Do(ctx, p.WithDefaults(retry.Default), func(int) error {
		err := pgx.BeginTxFunc(ctx, db, txOpts, func(tx pgx.Tx) error { return fn(ctx, tx) })
		if pgerr.Is(err, pgerr.DeadlockDetected) && !errors.Is(err, ErrDeadlock) {
			err = fmt.Errorf("%w: %w", ErrDeadlock, err)
		}
		return err
	}, pgerr.Retryable)
	switch r.Outcome {
	case retry.Exhausted:
		return r.Attempts, fmt.Errorf("pessimistic: gave up after %d attempts: %w", r.Attempts, err)
	case retry.Cancelled:
		return r.Attempts, errors.Join(r.CtxErr, err)
	}
	return r.Attempts, err
}
