package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pgonce/pgonce/migrations"
)

const migrateHelp = `migrate up|down|version|validate [flags]

  up        apply every embedded migration not yet applied (each in its own transaction)
  down      roll back every migration: drops dedupe_keys and fences with their data (needs --yes)
  version   print the applied version, whether it is dirty, and the latest embedded version
  validate  exit 0 when the schema is at the latest embedded version, 1 otherwise`

func (a *app) migrate(ctx context.Context, args []string) int {
	c := a.newCommand("migrate", migrateHelp)
	table := c.fs.String("migrations-table", migrations.DefaultMigrationsTable, "table that records the applied version")
	yes := c.fs.Bool("yes", false, "confirm migrate down (it drops the tables and their data)")
	pos, code, ok := a.parse(c, args, 1)
	if !ok {
		return code
	}
	sub := pos[0]
	c.name = "migrate " + sub
	switch sub {
	case "up", "version", "validate":
	case "down":
		if !*yes {
			return a.usageError(c.name, "this drops dedupe_keys and fences with all their rows; pass --yes to confirm", "")
		}
	default:
		return a.usageError("migrate", fmt.Sprintf("unknown subcommand %q (want up, down, version or validate)", sub), "")
	}
	pool, err := c.connect(ctx)
	if err != nil {
		return a.fail(c.name, err)
	}
	defer pool.Close()
	m, err := migrations.New(pool, &migrations.Config{Schema: c.schema, MigrationsTable: *table})
	if err != nil {
		return a.usageError(c.name, err.Error(), "")
	}
	switch sub {
	case "version":
		v, dirty, err := m.Version(ctx)
		if err != nil {
			return a.fail(c.name, err)
		}
		fmt.Fprintf(a.stdout, "version %d (dirty: %t, latest embedded: %d)\n", v, dirty, migrations.Latest())
		return exitOK
	case "validate":
		if err := m.Validate(ctx); err != nil {
			return a.fail(c.name, err)
		}
		fmt.Fprintf(a.stdout, "up to date: version %d\n", migrations.Latest())
		return exitOK
	}
	var res *migrations.Result
	if sub == "up" {
		res, err = m.Up(ctx)
	} else {
		res, err = m.Down(ctx)
	}
	if res != nil {
		for _, s := range res.Steps {
			dir := "up"
			if s.Down {
				dir = "down"
			}
			fmt.Fprintf(a.stdout, "%04d_%s %s (%s)\n", s.Version, s.Name, dir, s.Duration.Round(100*time.Microsecond))
		}
	}
	if err != nil {
		return a.fail(c.name, err)
	}
	if len(res.Steps) == 0 {
		fmt.Fprintf(a.stdout, "no change: version %d\n", res.To)
	} else {
		fmt.Fprintf(a.stdout, "version %d (was %d)\n", res.To, res.From)
	}
	return exitOK
}
