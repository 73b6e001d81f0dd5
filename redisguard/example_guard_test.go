package redisguard_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/redisguard"
)

// newRedis connects as a service would: from REDIS_URL, with context deadlines honoured so
// that the guard's short timeout can cut a hung call short.
func newRedis() *redis.Client {
	opt, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		panic(err)
	}
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt)
}

// The guard in front of the dedupe core: the first request runs in PostgreSQL, its retry is
// replayed from Redis without a transaction, and the same key with another payload is never
// given the cached response.
func ExampleGuard_Do() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	rdb := newRedis()
	defer rdb.Close()

	guard, err := redisguard.NewGuard(rdb, &redisguard.GuardOptions{Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	deduper := dedupe.New(nil)
	key := rand.Text() // the client's Idempotency-Key
	createOrder := func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		// The order is inserted through tx here; it commits together with the key.
		return dedupe.Response{Status: 201, Body: []byte(`{"order":"A1"}`)}, nil
	}
	req := dedupe.Request{Scope: "orders.create", Key: key, Fingerprint: dedupe.Fingerprint("POST", "/orders", []byte(`{"sku":"A1"}`))}

	res, err := guard.Do(ctx, deduper, pool, req, createOrder)
	fmt.Println("first:", res.Response.Status, string(res.Response.Body), res.Source, err)

	res, err = guard.Do(ctx, deduper, pool, req, createOrder)
	fmt.Println("retry:", res.Response.Status, string(res.Response.Body), res.Source, err)

	req.Fingerprint = dedupe.Fingerprint("POST", "/orders", []byte(`{"sku":"B2"}`))
	_, err = guard.Do(ctx, deduper, pool, req, createOrder)
	fmt.Println("other payload, same key:", errors.Is(err, dedupe.ErrFingerprintMismatch))
	// Output:
	// first: 201 {"order":"A1"} executed <nil>
	// retry: 201 {"order":"A1"} redis <nil>
	// other payload, same key: true
}

// Check, Commit and Release are the guard's steps, for code that does not use the dedupe core.
func ExampleGuard_Check() {
	ctx := context.Background()
	rdb := newRedis()
	defer rdb.Close()
	guard, err := redisguard.NewGuard(rdb, &redisguard.GuardOptions{Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	req := dedupe.Request{Scope: "mail.send", Key: rand.Text()}

	first, err := guard.Check(ctx, req)
	if err != nil {
		panic(err)
	}
	again, _ := guard.Check(ctx, req)
	fmt.Println(first.State, again.State)

	if err := first.Commit(ctx, dedupe.Result{Response: dedupe.Response{Status: 202}}); err != nil {
		panic(err)
	}
	after, _ := guard.Check(ctx, req)
	fmt.Println(after.State, after.Response.Status)
	// Output:
	// first in_progress
	// cached 202
}

// The guard in front of the HTTP middleware: Wrap turns it into the middleware's Runner, and
// the middleware's responses are unchanged (a replay from Redis carries Idempotent-Replayed).
func ExampleGuard_Wrap() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	rdb := newRedis()
	defer rdb.Close()

	guard, err := redisguard.NewGuard(rdb, &redisguard.GuardOptions{Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	mw, err := dedupehttp.New(dedupehttp.Config{DB: pool, Runner: guard.Wrap(dedupe.New(nil))})
	if err != nil {
		panic(err)
	}
	handler := mw.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"order":"A1"}`)
	}))

	key := rand.Text()
	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"sku":"A1"}`))
		req.Header.Set("Idempotency-Key", key)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Body.String(), "replayed:", rec.Header().Get(dedupehttp.HeaderReplayed) == "true")
	}
	// Output:
	// 201 {"order":"A1"} replayed: false
	// 201 {"order":"A1"} replayed: true
}
