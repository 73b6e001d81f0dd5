package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGPair is a primary and a streaming standby (pg_basebackup, physical replication) that one
// test owns, so it may kill the primary and promote the standby.
type PGPair struct {
	Primary *PGServer
	Standby *PGServer
	// URL connects as the superuser to the postgres database of whichever server accepts
	// writes: libpq's multi-host form (primary first) with target_session_attrs=read-write,
	// the way an application is pointed at a failover pair.
	URL string
	// Link is a proxy on the standby's replication connection (pg_basebackup and
	// primary_conninfo go through it), so a test can slow the standby down or cut it off.
	Link *Proxy
	// Sync is true when the primary waits for the standby to flush each commit
	// (synchronous_standby_names = '*', synchronous_commit = on).
	Sync bool
}

// replicationWait bounds each wait on the pair: replication reaching a state, promotion.
const replicationWait = 60 * time.Second

// OwnPrimaryStandby starts a primary (as OwnPostgres does), clones it with pg_basebackup into
// a standby that streams from it, and waits until the primary reports the standby streaming,
// and with sync, until the standby is synchronous. Both servers are stopped and their files
// removed when tb ends.
func OwnPrimaryStandby(tb testing.TB, sync bool) *PGPair {
	tb.Helper()
	p, stop, err := StartPrimaryStandby(sync)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return p
}

// StartPrimaryStandby is OwnPrimaryStandby for programs without a testing.TB (cmd/soak): it
// returns the pair and a function that stops both servers and removes their files.
//
// synchronous_standby_names is set only on the primary, in its postgresql.conf after the
// clone: set before the standby streams, every write would hang; copied to the standby (which
// ALTER SYSTEM's postgresql.auto.conf would be), the promoted standby would wait forever for a
// standby of its own.
func StartPrimaryStandby(sync bool) (_ *PGPair, _ func(), err error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	primary, stopPrimary, err := StartPostgres()
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, stopPrimary)
	dir, err := os.MkdirTemp("", "pgonce-standby-")
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, func() { _ = os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755)
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	standby := &PGServer{bin: primary.bin, data: filepath.Join(dir, "data"), port: port}
	link, err := StartProxy(fmt.Sprintf("127.0.0.1:%d", primary.port))
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, link.Close)
	source := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=standby", link.port())
	// -R writes standby.signal and primary_conninfo; -X stream copies the WAL written meanwhile.
	if out, err := standby.run("pg_basebackup", "-d", source, "-D", standby.data, "-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
		return nil, nil, fmt.Errorf("harness: pg_basebackup: %v\n%s", err, out)
	}
	standby.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", standby.port)
	stops = append(stops, func() { _, _ = standby.run("pg_ctl", "-D", standby.data, "-m", "immediate", "-w", "stop") })
	if err := standby.Start(); err != nil {
		return nil, nil, err
	}
	p := &PGPair{
		Primary: primary,
		Standby: standby,
		URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=2",
			primary.port, standby.port),
		Link: link,
		Sync: sync,
	}
	ctx, cancel := context.WithTimeout(context.Background(), replicationWait)
	defer cancel()
	if err := p.waitReplication(ctx, "async"); err != nil {
		return nil, nil, err
	}
	if sync {
		if err := p.makeSynchronous(ctx); err != nil {
			return nil, nil, err
		}
	}
	return p, stop, nil
}

// makeSynchronous turns on synchronous replication on the primary and waits until the standby
// is synchronous.
func (p *PGPair) makeSynchronous(ctx context.Context) error {
	f, err := os.OpenFile(filepath.Join(p.Primary.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("\n# harness.StartPrimaryStandby\nsynchronous_standby_names = '*'\nsynchronous_commit = on\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if out, err := p.Primary.run("pg_ctl", "-D", p.Primary.data, "reload"); err != nil {
		return fmt.Errorf("harness: pg_ctl reload: %v\n%s", err, out)
	}
	return p.waitReplication(ctx, "sync")
}

// waitReplication polls the primary until the standby is streaming with the given sync_state.
func (p *PGPair) waitReplication(ctx context.Context, syncState string) error {
	const q = `SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = $1`
	return poll(ctx, p.Primary.URL, func(c *pgx.Conn) (bool, error) {
		var n int
		err := c.QueryRow(ctx, q, syncState).Scan(&n)
		return n == 1, err
	}, "standby streaming with sync_state "+syncState)
}

// KillPrimary stops the primary the way a crash would (pg_ctl stop -m immediate: no
// checkpoint, connections dropped, nothing more sent to the standby).
func (p *PGPair) KillPrimary() error {
	if out, err := p.Primary.run("pg_ctl", "-D", p.Primary.data, "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("harness: pg_ctl stop -m immediate: %v\n%s", err, out)
	}
	return nil
}

// Promote promotes the standby (SELECT pg_promote(), which waits for the promotion; faster
// than pg_ctl promote, which checks back only every 100ms or so) and then waits until it
// accepts writes (pg_is_in_recovery() is false). The standby first replays all the WAL it
// received.
func (p *PGPair) Promote(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, replicationWait)
	defer cancel()
	promoted := false
	return poll(ctx, p.Standby.URL, func(c *pgx.Conn) (bool, error) {
		if !promoted {
			if err := c.QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&promoted); err != nil {
				return false, err
			}
		}
		var recovering bool
		err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&recovering)
		return !recovering, err
	}, "standby promoted")
}

// poll connects to url and runs done until it says true, retrying on errors every 20ms until
// ctx ends; the error then names what was awaited and the last error seen.
func poll(ctx context.Context, url string, done func(*pgx.Conn) (bool, error), what string) error {
	var last error
	for {
		if c, err := pgx.Connect(ctx, url); err != nil {
			last = err
		} else {
			var ok bool
			ok, last = done(c)
			_ = c.Close(context.Background())
			if ok && last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
