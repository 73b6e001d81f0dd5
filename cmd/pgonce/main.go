// Command pgonce operates the pgonce toolkit's tables in PostgreSQL: it applies the embedded
// migrations, purges expired idempotency keys, shows or forgets one key, and reports sizes.
//
// Install with
//
//	go install github.com/pgonce/pgonce/cmd/pgonce@latest
//
// and run pgonce --help for the commands. The database comes from DATABASE_URL or
// --database-url; --schema names the schema of the tables (default: the connection's
// search_path). Exit status: 0 on success, 1 on failure, 2 on bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
)

func main() {
	// SIGINT and SIGTERM cancel the context: a migration in progress rolls back, a purge
	// stops between batches, and pgonce purge --every exits 0.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

const usage = `pgonce operates the pgonce toolkit's tables (dedupe_keys, fences) in PostgreSQL.

Usage:
  pgonce migrate up|down|version|validate [flags]   apply, roll back or check the schema
  pgonce purge [--batch N] [--every D] [flags]      delete expired keys (once, or every D)
  pgonce key show SCOPE KEY [--body] [flags]        print one key's row
  pgonce key forget SCOPE KEY [flags]               delete one key
  pgonce stats [flags]                              rows by scope, expired rows, sizes

Flags of every command:
  --database-url URL   PostgreSQL URL or DSN (default $DATABASE_URL)
  --schema NAME        schema of the toolkit's tables (default: the connection's search_path)

'pgonce COMMAND --help' describes a command. Exit status: 0 success, 1 failure, 2 bad usage.
`

// run is the whole program with its environment passed in, so tests run it in-process.
func run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) int {
	a := &app{env: env, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		return a.usageError("", "no command", usage)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "migrate":
		return a.migrate(ctx, rest)
	case "purge":
		return a.purge(ctx, rest)
	case "key":
		return a.key(ctx, rest)
	case "stats":
		return a.stats(ctx, rest)
	default:
		return a.usageError("", fmt.Sprintf("unknown command %q", cmd), usage)
	}
}

// app holds what every command writes to and reads from.
type app struct {
	env            func(string) string
	stdout, stderr io.Writer
}

// common are the flags of every command.
type common struct {
	databaseURL, schema string
}

// command is one parsed command line.
type command struct {
	name, help string
	fs         *flag.FlagSet
	common
}

func (a *app) newCommand(name, help string) *command {
	c := &command{name: name, help: help, fs: flag.NewFlagSet("pgonce "+name, flag.ContinueOnError)}
	c.fs.SetOutput(io.Discard) // run prints errors and help itself, to the right stream
	c.fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL URL or DSN (default $DATABASE_URL)")
	c.fs.StringVar(&c.schema, "schema", "", "schema of the toolkit's tables (default: the connection's search_path)")
	return c
}

// parse parses args, allowing flags after positional arguments ("key show S K --body"), and
// checks the number of positional arguments. ok false means run must return code.
func (a *app) parse(c *command, args []string, wantArgs int) (pos []string, code int, ok bool) {
	for {
		err := c.fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			a.printHelp(a.stdout, c)
			return nil, exitOK, false
		}
		if err != nil {
			return nil, a.usageError(c.name, err.Error(), ""), false
		}
		rest := c.fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...) // everything after -- is an argument
			break
		}
		if len(rest) == 0 {
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) != wantArgs {
		return nil, a.usageError(c.name, fmt.Sprintf("want %d arguments, got %d", wantArgs, len(pos)), ""), false
	}
	if c.databaseURL == "" {
		c.databaseURL = a.env("DATABASE_URL")
	}
	if c.databaseURL == "" {
		return nil, a.usageError(c.name, "no database: set DATABASE_URL or --database-url", ""), false
	}
	return pos, exitOK, true
}

func (a *app) printHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: pgonce %s\n\nFlags:\n", c.help)
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}

// usageError reports bad usage on stderr and returns exit status 2.
func (a *app) usageError(name, msg, help string) int {
	if name != "" {
		name = " " + name
	}
	fmt.Fprintf(a.stderr, "pgonce%s: %s\n", name, msg)
	if help != "" {
		fmt.Fprint(a.stderr, help)
	} else {
		fmt.Fprintf(a.stderr, "Run 'pgonce%s --help' for usage.\n", name)
	}
	return exitUsage
}

// fail reports a failure on stderr and returns exit status 1.
func (a *app) fail(name string, err error) int {
	fmt.Fprintf(a.stderr, "pgonce %s: %v\n", name, err)
	return exitFail
}

// connect opens a small pool: the commands run one statement at a time, and a pool
// reconnects when purge --every outlives a connection.
func (c *command) connect(ctx context.Context) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(c.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return pool, nil
}

// keysTable is the dedupe table, in --schema when given, else resolved through search_path.
func (c *command) keysTable() pgx.Identifier {
	if c.schema != "" {
		return pgx.Identifier{c.schema, dedupe.DefaultTable}
	}
	return pgx.Identifier{dedupe.DefaultTable}
}
