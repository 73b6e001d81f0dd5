package optimistic

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// ETag renders a version as a strong entity tag, `"v7"`, for the ETag response header.
func ETag(version int64) string {
	return `"v` + strconv.FormatInt(version, 10) + `"`
}

// IfMatch reads the version a client sent back in an If-Match header (as produced by ETag).
// ok is false when the header is absent, is "*", lists several tags, or is not one of ours; a
// handler then decides whether to require it (428 Precondition Required) or to go on without.
func IfMatch(h http.Header) (version int64, ok bool) {
	v := strings.TrimSpace(h.Get("If-Match"))
	if !strings.HasPrefix(v, `"v`) || !strings.HasSuffix(v, `"`) || len(v) < 4 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[2:len(v)-1], 10, 64)
	return n, err == nil
}

// HTTPStatus maps the package's errors to a response status: 412 Precondition Failed for a
// stale version (the client's If-Match no longer matches), 404 for a missing row, and 0 for
// any other error (the caller decides).
func HTTPStatus(err error) int {
	switch {
	case errors.Is(err, ErrStale):
		return http.StatusPreconditionFailed
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	}
	return 0
}
