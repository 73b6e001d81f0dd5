package optimistic

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ETag renders a version as a strong entity tag, `"v7"`, for the ETag response header.
func ETag(version int64) string {
	return `"v` + strconv.FormatInt(version, 10) + `"`
}

// ParseETag returns the version of an entity tag made by ETag. ok is false for any other
// text, weak tags (W/"v7") included: If-Match compares entity tags strongly, so a weak tag
// never matches.
func ParseETag(tag string) (version int64, ok bool) {
	if len(tag) < 4 || !strings.HasPrefix(tag, `"v`) || tag[len(tag)-1] != '"' {
		return 0, false
	}
	digits := tag[2 : len(tag)-1]
	v, err := strconv.ParseInt(digits, 10, 64)
	// Only the exact text ETag writes: "v+7" or "v07" is some other tag.
	if err != nil || strconv.FormatInt(v, 10) != digits {
		return 0, false
	}
	return v, true
}

// Precondition is an If-Match request header, read by IfMatch.
type Precondition struct {
	// Present is true when the request carried If-Match. Without one the handler decides:
	// require it (428 Precondition Required) or update whichever version it reads.
	Present bool
	// Any is true for "If-Match: *", which every existing row matches.
	Any bool
	// Versions are the versions of the listed tags that ETag made. Other tags (weak ones,
	// other servers' tags, malformed ones) can never match and are left out, so a header
	// that is present but lists none of ours fails Check.
	Versions []int64
}

// IfMatch reads the If-Match header (all its lines) as RFC 9110 defines it: "*" or a
// comma-separated list of entity tags. It does no I/O.
//
// A handler reads the row, checks the precondition, and updates with the version it read;
// Update refuses if the row changed in between, so the check and the write cannot be split:
//
//	pre := optimistic.IfMatch(r.Header)
//	version, err := products.Get(ctx, pool, sku, []string{"stock"}, &stock)
//	if err == nil {
//		err = pre.Check(version)
//	}
//	if err == nil {
//		version, err = products.Update(ctx, pool, sku, version, optimistic.Set{Column: "stock", Value: stock - n})
//	}
//	if status := optimistic.HTTPStatus(err); status != 0 { ... } // 412, 404, 409
//	w.Header().Set("ETag", optimistic.ETag(version))
//
// A blind write that reads nothing can pass pre.Versions[0] to Update as the expected
// version when the header lists exactly one.
func IfMatch(h http.Header) Precondition {
	var p Precondition
	for _, line := range h.Values("If-Match") {
		p.Present = true
		s := line
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				p.Any = true
				s = s[1:]
				continue
			}
			weak := strings.HasPrefix(s, "W/")
			if weak {
				s = s[2:]
			}
			if !strings.HasPrefix(s, `"`) {
				// Not an entity tag: skip to the next element.
				if i := strings.IndexByte(s, ','); i >= 0 {
					s = s[i:]
				} else {
					s = ""
				}
				continue
			}
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				break // unterminated tag: nothing more to read
			}
			tag := s[:end+2]
			s = s[end+2:]
			if v, ok := ParseETag(tag); ok && !weak {
				p.Versions = append(p.Versions, v)
			}
		}
	}
	return p
}

// Check reports whether a row at version current satisfies the precondition: nil when the
// header was absent, was "*", or lists current; otherwise an error wrapping ErrStale, which
// HTTPStatus maps to 412 Precondition Failed. No I/O.
func (p Precondition) Check(current int64) error {
	if !p.Present || p.Any {
		return nil
	}
	for _, v := range p.Versions {
		if v == current {
			return nil
		}
	}
	return fmt.Errorf("%w: If-Match does not match the current version %s", ErrStale, ETag(current))
}

// HTTPStatus maps the package's errors to a response status: 412 Precondition Failed for a
// stale version (the client's If-Match no longer matches), 409 Conflict when Retry gave up
// (the row kept changing under it; the client may try again), 404 Not Found for a missing
// row, and 0 for any other error, nil included (the caller decides).
func HTTPStatus(err error) int {
	switch {
	case errors.Is(err, ErrExhausted):
		return http.StatusConflict
	case errors.Is(err, ErrStale):
		return http.StatusPreconditionFailed
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	}
	return 0
}
