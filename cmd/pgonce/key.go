package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

const (
	keyShowHelp = `key show SCOPE KEY [--body] [flags]

Prints the key's row: status, fingerprint (hex), headers, created/completed/expires times and
body size; the body itself (as stored: encrypted when the service uses a BodyCodec) only with
--body. Exits 1 when there is no such key.`

	keyForgetHelp = `key forget SCOPE KEY [flags]

Deletes the key, so the next request with it runs again: for a stuck or mistaken key. Waits
for a request that is claiming the key right now to finish. Reports whether the key existed.`

	keyUsage = `Usage:
  pgonce key show SCOPE KEY [--body] [flags]
  pgonce key forget SCOPE KEY [flags]
`

	// %[1]s is the sanitised dedupe table.
	sqlKeyShow = `SELECT status, fingerprint, headers::text, created_at, completed_at, expires_at,
	expires_at <= now(), octet_length(body), CASE WHEN $3::boolean THEN body END
FROM %[1]s WHERE scope = $1::text AND key = $2::text`
	sqlKeyForget = `DELETE FROM %[1]s WHERE scope = $1::text AND key = $2::text`
)

func (a *app) key(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return a.usageError("key", "no subcommand (want show or forget)", keyUsage)
	}
	switch args[0] {
	case "show":
		return a.keyShow(ctx, args[1:])
	case "forget":
		return a.keyForget(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(a.stdout, keyUsage)
		return exitOK
	}
	return a.usageError("key", fmt.Sprintf("unknown subcommand %q (want show or forget)", args[0]), keyUsage)
}

func (a *app) keyShow(ctx context.Context, args []string) int {
	c := a.newCommand("key show", keyShowHelp)
	withBody := c.fs.Bool("body", false, "also print the stored body")
	pos, code, ok := a.parse(c, args, 2)
	if !ok {
		return code
	}
	scope, key := pos[0], pos[1]
	pool, err := c.connect(ctx)
	if err != nil {
		return a.fail(c.name, err)
	}
	defer pool.Close()

	var (
		status           *int32
		fingerprint      []byte
		headers          *string
		created, expires time.Time
		completed        *time.Time
		expired          bool
		bodyLen          *int32
		body             []byte
	)
	err = pool.QueryRow(ctx, fmt.Sprintf(sqlKeyShow, c.keysTable().Sanitize()), scope, key, *withBody).
		Scan(&status, &fingerprint, &headers, &created, &completed, &expires, &expired, &bodyLen, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		return a.fail(c.name, fmt.Errorf("no key %q in scope %q", key, scope))
	}
	if err != nil {
		return a.fail(c.name, err)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	field := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%s\t"+format+"\n", append([]any{name}, args...)...)
	}
	field("scope", "%s", scope)
	field("key", "%s", key)
	if status == nil {
		field("status", "none (claimed, response not stored yet)")
	} else {
		field("status", "%d", *status)
	}
	field("fingerprint", "%s", orNone(hex.EncodeToString(fingerprint)))
	field("headers", "%s", orNone(deref(headers)))
	field("created_at", "%s", stamp(created))
	if completed == nil {
		field("completed_at", "none")
	} else {
		field("completed_at", "%s", stamp(*completed))
	}
	exp := stamp(expires)
	if expired {
		exp += " (expired: the next request with this key runs again)"
	}
	field("expires_at", "%s", exp)
	if bodyLen == nil {
		field("body_bytes", "none")
	} else {
		field("body_bytes", "%d", *bodyLen)
	}
	if *withBody && body != nil {
		if printable(body) {
			field("body", "%s", body)
		} else {
			field("body (hex)", "%s", hex.EncodeToString(body))
		}
	}
	if err := w.Flush(); err != nil {
		return a.fail(c.name, err)
	}
	return exitOK
}

func (a *app) keyForget(ctx context.Context, args []string) int {
	c := a.newCommand("key forget", keyForgetHelp)
	pos, code, ok := a.parse(c, args, 2)
	if !ok {
		return code
	}
	scope, key := pos[0], pos[1]
	pool, err := c.connect(ctx)
	if err != nil {
		return a.fail(c.name, err)
	}
	defer pool.Close()
	tag, err := pool.Exec(ctx, fmt.Sprintf(sqlKeyForget, c.keysTable().Sanitize()), scope, key)
	if err != nil {
		return a.fail(c.name, err)
	}
	if tag.RowsAffected() == 0 {
		fmt.Fprintf(a.stdout, "no key %q in scope %q: nothing to forget\n", key, scope)
	} else {
		fmt.Fprintf(a.stdout, "forgot key %q in scope %q: the next request with it runs again\n", key, scope)
	}
	return exitOK
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// printable reports whether b can go to a terminal as text.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
