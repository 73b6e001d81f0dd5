package dedupehttp

import (
	"bytes"
	"net/http"
)

// recorder captures what the wrapped handler writes, so the response can be stored in the
// same transaction as the handler's writes and sent only after that transaction committed.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	limit  int  // bytes of body kept; more makes tooLarge true
	large  bool // the handler wrote more than limit
}

func newRecorder(limit int) *recorder {
	return &recorder{header: make(http.Header), limit: limit}
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status != 0 || status < 200 {
		return // like net/http: the first final status wins; 1xx are not recorded
	}
	r.status = status
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(p) > r.limit {
		r.large = true
		return len(p), nil // keep the handler going; the response is refused after it returns
	}
	return r.body.Write(p)
}

func (r *recorder) statusCode() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
