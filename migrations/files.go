package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Migration is one embedded migration, read from its pair of files
// NNNN_name.up.sql and NNNN_name.down.sql.
type Migration struct {
	// Version is the file name's numeric prefix (0001_dedupe_keys.up.sql is version 1).
	Version uint
	// Name is the rest of the file name ("dedupe_keys").
	Name string

	up, down string
}

// all is every embedded migration in version order, read once at start-up. The files are
// compiled in, so a malformed set is a build mistake that the package's tests catch.
var all = mustLoad(files)

func mustLoad(fsys fs.FS) []Migration {
	ms, err := load(fsys)
	if err != nil {
		panic(err)
	}
	return ms
}

func load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	byVersion := map[uint]*Migration{}
	for _, e := range entries {
		base, dir, ok := strings.Cut(e.Name(), ".")
		if !ok || (dir != "up.sql" && dir != "down.sql") {
			continue
		}
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil || v == 0 || name == "" {
			return nil, fmt.Errorf("migrations: malformed file name %q (want NNNN_name.up.sql)", e.Name())
		}
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		m := byVersion[uint(v)]
		if m == nil {
			m = &Migration{Version: uint(v), Name: name}
			byVersion[uint(v)] = m
		}
		if m.Name != name {
			return nil, fmt.Errorf("migrations: version %d has two names, %q and %q", v, m.Name, name)
		}
		if dir == "up.sql" {
			m.up = string(body)
		} else {
			m.down = string(body)
		}
	}
	ms := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.up == "" || m.down == "" {
			return nil, fmt.Errorf("migrations: version %d (%s) needs both an up and a down file", m.Version, m.Name)
		}
		ms = append(ms, *m)
	}
	slices.SortFunc(ms, func(a, b Migration) int { return int(a.Version) - int(b.Version) })
	return ms, nil
}

// Migrations lists the embedded migrations in version order.
func Migrations() []Migration { return slices.Clone(all) }

// Latest is the highest embedded version: the version Up brings a schema to.
func Latest() uint { return all[len(all)-1].Version }

// index is the position of version v in all, or -1.
func index(v uint) int {
	i, ok := slices.BinarySearchFunc(all, v, func(m Migration, v uint) int {
		switch {
		case m.Version < v:
			return -1
		case m.Version > v:
			return 1
		}
		return 0
	})
	if !ok {
		return -1
	}
	return i
}

// FS returns the migration files (NNNN_name.up.sql / NNNN_name.down.sql) at the root of an
// fs.FS, for tools that read migrations from a file system.
func FS() fs.FS { return files }
