// Package harness gives integration tests real PostgreSQL and Redis servers.
//
// Servers come from DEDUPE_TEST_DATABASE_URL and DEDUPE_TEST_REDIS_URL when set (make test sets
// them from scripts/services.sh). When a variable is unset, the harness starts a container for
// that server with testcontainers-go on first use, shared by the whole test binary and removed
// by Main. When neither works, the test fails with a message that names both ways.
//
// Tests of the toolkit behind PgBouncer in transaction pooling use PooledDB, which needs
// DEDUPE_TEST_PGBOUNCER_URL (scripts/services.sh starts one; no container is started for it).
//
// Each test gets its own schema (DB) and its own Redis key prefix (Redis), so tests run in
// parallel without seeing each other's data.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"

	"github.com/pgonce/pgonce/internal/pgtest"
)

// Container images used when no server URL is configured.
const (
	PostgresImage = "postgres:16-alpine"
	RedisImage    = "redis:7-alpine"
)

type lazyServer struct {
	once      sync.Once
	url       string
	err       error
	container testcontainers.Container
}

var (
	pgServer    lazyServer
	redisServer lazyServer
)

// PostgresURL returns the URL of the test PostgreSQL server (the whole database; use DB for an
// isolated schema).
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	return pgServer.get(tb, pgtest.EnvDatabaseURL, startPostgres)
}

// RedisURL returns the URL of the test Redis server.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	return redisServer.get(tb, pgtest.EnvRedisURL, startRedis)
}

// DB returns a fresh schema with the toolkit's migrations applied, dropped when tb ends.
func DB(tb testing.TB, opts *pgtest.Options) *pgtest.DB {
	tb.Helper()
	return pgtest.New(tb, PostgresURL(tb), opts)
}

// Prefix returns a random key prefix for one test's Redis keys.
func Prefix(tb testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test:" + hex.EncodeToString(b[:]) + ":"
}

// Main runs the tests and then removes any container the harness started.
// It also installs go-redis's logger for the binary (see onceLogger).
func Main(m *testing.M) int {
	logger := &onceLogger{seen: map[string]int{}}
	redis.SetLogger(logger)
	code := m.Run()
	if s := logger.summary(); s != "" {
		fmt.Fprintln(os.Stderr, s)
	}
	for _, s := range []*lazyServer{&pgServer, &redisServer} {
		if s.container != nil {
			_ = testcontainers.TerminateContainer(s.container)
		}
	}
	return code
}

func (s *lazyServer) get(tb testing.TB, env string, start func(context.Context) (string, testcontainers.Container, error)) string {
	tb.Helper()
	if u := os.Getenv(env); u != "" {
		return u
	}
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		s.url, s.container, s.err = startSafely(ctx, start)
	})
	if s.err != nil {
		tb.Fatalf("%s\n\n%s is unset and starting a container failed: %v", pgtest.HowTo, env, s.err)
	}
	return s.url
}

// startSafely turns a panic inside testcontainers (it panics when it finds no Docker host)
// into an error, so the test can say what to do instead.
func startSafely(ctx context.Context, start func(context.Context) (string, testcontainers.Container, error)) (u string, c testcontainers.Container, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("testcontainers: %v", r)
		}
	}()
	return start(ctx)
}

func startPostgres(ctx context.Context) (string, testcontainers.Container, error) {
	c, err := tcpostgres.Run(ctx, PostgresImage,
		tcpostgres.WithDatabase("dedupe_test"),
		tcpostgres.WithUsername("dedupe"),
		tcpostgres.WithPassword("dedupe"),
		tcpostgres.BasicWaitStrategies(),
		testcontainers.WithCmdArgs("-c", "max_connections=400"),
	)
	if err != nil {
		return "", c, err
	}
	u, err := c.ConnectionString(ctx, "sslmode=disable")
	return u, c, err
}

func startRedis(ctx context.Context) (string, testcontainers.Container, error) {
	c, err := tcredis.Run(ctx, RedisImage)
	if err != nil {
		return "", c, err
	}
	u, err := c.ConnectionString(ctx)
	return u, c, err
}
