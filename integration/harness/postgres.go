package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGServer is a PostgreSQL server that one test owns (initdb + pg_ctl on a free loopback
// port), so the test may stop and restart it without disturbing any other test.
type PGServer struct {
	// URL connects as the superuser to the postgres database.
	URL  string
	bin  string
	data string
	port int
}

// OwnPostgres starts a fresh server from the PostgreSQL binaries on this machine (installed by
// scripts/services.sh). It runs as the postgres user when the test runs as root. The server is
// stopped and its files removed when tb ends.
func OwnPostgres(tb testing.TB) *PGServer {
	tb.Helper()
	s, stop, err := StartPostgres()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return s
}

// StartPostgres is OwnPostgres for programs without a testing.TB (cmd/soak): it returns the
// server and a function that stops it and removes its files.
func StartPostgres() (*PGServer, func(), error) {
	bin := pgBinDir()
	if bin == "" {
		return nil, nil, errors.New("harness: no PostgreSQL server binaries under /usr/lib/postgresql; run scripts/services.sh (apt-get install postgresql)")
	}
	dir, err := os.MkdirTemp("", "pgonce-pg-")
	if err != nil {
		return nil, nil, err
	}
	remove := func() { _ = os.RemoveAll(dir) }
	_ = os.Chmod(dir, 0o755)
	port, err := freePort()
	if err != nil {
		remove()
		return nil, nil, err
	}
	s := &PGServer{bin: bin, data: filepath.Join(dir, "data"), port: port}
	if out, err := s.run("initdb", "-D", s.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		remove()
		return nil, nil, fmt.Errorf("harness: initdb: %v\n%s", err, out)
	}
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	stop := func() {
		_, _ = s.run("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop")
		remove()
	}
	if err := s.Start(); err != nil {
		stop()
		return nil, nil, err
	}
	return s, stop, nil
}

// Start starts the server and waits until it accepts connections.
func (s *PGServer) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", s.port, filepath.Dir(s.data))
	if out, err := s.run("pg_ctl", "-D", s.data, "-o", opts, "-l", filepath.Join(filepath.Dir(s.data), "log"), "-w", "start"); err != nil {
		return fmt.Errorf("harness: pg_ctl start: %v\n%s", err, out)
	}
	return s.waitReady()
}

// Restart restarts the server (fast shutdown: open transactions are rolled back and every
// connection is dropped) and waits until it accepts connections again.
func (s *PGServer) Restart() error {
	if out, err := s.run("pg_ctl", "-D", s.data, "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("harness: pg_ctl stop: %v\n%s", err, out)
	}
	return s.Start()
}

func (s *PGServer) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.URL)
		cancel()
		if err == nil {
			_ = c.Close(context.Background())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("harness: own PostgreSQL not ready: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *PGServer) run(tool string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, tool)
	var cmd *exec.Cmd
	if os.Getuid() == 0 {
		// PostgreSQL refuses to run as root.
		_ = exec.Command("chown", "-R", "postgres:postgres", filepath.Dir(s.data)).Run()
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	return cmd.CombinedOutput()
}

func pgBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) < version(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "pg_ctl")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
