package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvRedisClusterAddrs names the seed addresses of a Redis Cluster for the cluster tests,
// comma separated (scripts/services.sh starts one on 127.0.0.1:7000-7002 and prints it).
const EnvRedisClusterAddrs = "DEDUPE_TEST_REDIS_CLUSTER_ADDRS"

const redisHowTo = `redis-server (and redis-cli) must be installed for tests that run their own Redis
servers: run scripts/services.sh from the repository root (it installs them with apt-get)`

// RedisServer is a redis-server subprocess owned by one test, on a free loopback port, with
// no persistence (--save "" --appendonly no): a restart comes back empty, as after a crash of
// a server without persistence. Use it for tests that stop, restart, pause or flush Redis,
// never the shared server. It is killed when the test ends.
type RedisServer struct {
	// Addr is host:port, stable across Stop and Start.
	Addr string

	tb   testing.TB
	args []string
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	log    *tail
}

// StartRedis starts a redis-server with the extra args (say "--cluster-enabled", "yes") on a
// free loopback port and waits until it accepts connections. It fails tb with a message saying
// to run scripts/services.sh when redis-server is missing.
func StartRedis(tb testing.TB, args ...string) *RedisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatal(redisHowTo)
	}
	s := &RedisServer{tb: tb, args: args, dir: tb.TempDir()}
	tb.Cleanup(s.kill)
	var err error
	for range 5 { // another process may take the free port before the server binds it
		s.Addr, err = freeAddr()
		if err != nil {
			tb.Fatalf("harness: free port: %v", err)
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	tb.Fatalf("harness: start redis-server: %v", err)
	return nil
}

// URL returns redis://Addr/0.
func (s *RedisServer) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a client for the server with ContextTimeoutEnabled (context deadlines cut
// hung calls short), closed when the test ends.
func (s *RedisServer) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server (SIGKILL: no shutdown work, like a crash) and waits until it exited.
func (s *RedisServer) Stop() {
	s.tb.Helper()
	s.kill()
}

// Start starts the server again on the same address, empty, and waits until it is ready.
func (s *RedisServer) Start() {
	s.tb.Helper()
	if err := s.start(); err != nil {
		s.tb.Fatalf("harness: restart redis-server on %s: %v", s.Addr, err)
	}
}

// Restart is Stop then Start: the server comes back without any key.
func (s *RedisServer) Restart() {
	s.tb.Helper()
	s.Stop()
	s.Start()
}

func (s *RedisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", "", "--daemonize", "no",
	}, s.args...)
	cmd := exec.Command("redis-server", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan struct{})
	exited := make(chan struct{})
	log := &tail{}
	// Drains the server's log for as long as it runs (a full pipe would block it), signals
	// readiness from the log line that says so, and reaps the process.
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			log.add(sc.Text())
			if !signalled && strings.Contains(sc.Text(), "Ready to accept connections") {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
		s.cmd, s.exited, s.log = cmd, exited, log
		return nil
	case <-exited:
		return fmt.Errorf("redis-server exited during start-up:\n%s", log.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server not ready after 30s:\n%s", log.String())
	}
}

func (s *RedisServer) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// RedisClusterAddrs returns the seed addresses of a Redis Cluster with three masters: from
// DEDUPE_TEST_REDIS_CLUSTER_ADDRS (scripts/services.sh starts one on 127.0.0.1:7000-7002),
// else a cluster of three redis-server subprocesses started for this test, and removed when
// it ends. Tests sharing a cluster must keep to their own key prefix (Prefix).
func RedisClusterAddrs(tb testing.TB) []string {
	tb.Helper()
	if v := os.Getenv(EnvRedisClusterAddrs); v != "" {
		return strings.Split(v, ",")
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		tb.Fatalf("%s is unset and no cluster can be started here: run eval \"$(scripts/services.sh)\" from the repository root (it starts one on 127.0.0.1:7000-7002), or install redis-server and redis-tools so the harness can start one itself", EnvRedisClusterAddrs)
	}
	var addrs []string
	for range 3 {
		bus, err := freeAddr() // the default bus port, port+10000, may be taken or out of range
		if err != nil {
			tb.Fatalf("harness: free port: %v", err)
		}
		_, busPort, _ := net.SplitHostPort(bus)
		s := StartRedis(tb, "--cluster-enabled", "yes", "--cluster-port", busPort, "--cluster-node-timeout", "5000")
		addrs = append(addrs, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("harness: redis-cli --cluster create: %v\n%s", err, out)
	}
	// The nodes agree on the slots through gossip, after create returns; nothing signals it.
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if ctx.Err() != nil {
				_ = c.Close()
				tb.Fatalf("harness: cluster on %v not ready: %v %s", addrs, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
	}
	return addrs
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}

// tail keeps the last lines of a server's log for error messages.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > 20 {
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// onceLogger is go-redis's internal logger for test binaries. Tests that stop Redis on
// purpose make go-redis log every failed dial, thousands of identical lines that would bury
// a failing test's output: each distinct message format is printed the first time only, and
// Main prints how many were held back.
type onceLogger struct {
	mu   sync.Mutex
	seen map[string]int
}

func (l *onceLogger) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[format]++
	if l.seen[format] == 1 {
		fmt.Fprintf(os.Stderr, "redis: "+format+" (repeats are counted, not printed)\n", v...)
	}
}

// summary reports how many messages were held back.
func (l *onceLogger) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	held := 0
	for _, n := range l.seen {
		held += n - 1
	}
	if held == 0 {
		return ""
	}
	return fmt.Sprintf("redis: %d repeated go-redis log lines were not printed", held)
}
