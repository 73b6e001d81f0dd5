package redisguard_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/pessimistic"
	"github.com/pgonce/pgonce/redisguard"
)

// A lease lock with a watchdog, and its fencing token checked in PostgreSQL.
func ExampleLocker_Obtain() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	rdb := newRedis()
	defer rdb.Close()
	locker, err := redisguard.NewLocker(rdb, nil)
	if err != nil {
		panic(err)
	}
	resource := "report:" + rand.Text()

	lock, err := locker.Obtain(ctx, resource, 10*time.Second, &redisguard.LockOptions{
		Retry: redisguard.ExponentialRetry(10*time.Millisecond, 500*time.Millisecond),
	})
	if err != nil {
		panic(err)
	}
	work, stop := lock.Watch(ctx) // refreshes every TTL/3; cancels work if the lock is lost
	err = pessimistic.FencedWrite(work, pool, resource, lock.Token(), func(ctx context.Context, tx pgx.Tx) error {
		return nil // the report is written through tx here
	})
	fmt.Println("fenced write:", err)

	_, err = locker.Obtain(ctx, resource, 10*time.Second, nil)
	fmt.Println("someone else:", errors.Is(err, redisguard.ErrNotObtained))

	stop()
	fmt.Println("release:", lock.Release(ctx))
	err = lock.Release(ctx)
	fmt.Println("release again:", errors.Is(err, redisguard.ErrNotHeld))
	// Output:
	// fenced write: <nil>
	// someone else: true
	// release: <nil>
	// release again: true
}
