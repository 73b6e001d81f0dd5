package dedupehttp

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
)

// Config configures a Middleware. DB is required; every other zero value means the default
// noted on the field.
type Config struct {
	// DB is where requests run: normally a *pgxpool.Pool. Required.
	DB dedupe.DB
	// Runner executes requests; default a *dedupe.Deduper with LockWait DefaultLockWait, so
	// that a concurrent duplicate waits at most that long for the first request (holding a
	// pooled connection meanwhile) and then gets 409. Give it a *dedupe.Deduper with your
	// options (TTL, LockWait), or a Redis-fronted runner (redisguard.Guard.Wrap).
	Runner dedupe.Runner
	// Header is the request header that carries the key; default HeaderKey
	// ("Idempotency-Key").
	Header string
	// Fingerprint computes the request's fingerprint from the request and its body; default
	// dedupe.Fingerprint over method, path with the sorted query, and the canonical body. Set
	// it to fingerprint chosen fields only (the way Powertools' payload_validation_jmespath
	// or River's ByArgs do), so that retries that differ in other fields replay instead of
	// getting 422. Requests whose fingerprints differ are different requests.
	Fingerprint func(r *http.Request, body []byte) []byte
	// OnReplay, when set, is called for every response replayed to a retry (res.Source says
	// whether PostgreSQL or Redis answered), after the response was written: for metrics and
	// audit logs.
	OnReplay func(r *http.Request, res dedupe.Result)
	// Methods are the HTTP methods that are deduplicated; default POST and PATCH. Requests
	// with other methods pass straight through, without a transaction.
	Methods []string
	// Route names the route in the key's scope; default the pattern the request matched in
	// an http.ServeMux (Request.Pattern, without its method), else the URL path. Wrap each
	// route's handler (not the whole mux) so the pattern is known.
	Route func(r *http.Request) string
	// Tenant, when set, adds the caller's tenant or principal to the scope, so two tenants
	// using the same key never see each other's responses. Return "" for none.
	Tenant func(r *http.Request) string
	// MaxBodyBytes limits the request body; larger requests get 413. Default 1 MiB.
	MaxBodyBytes int64
	// MaxResponseBytes limits the response body that is recorded and stored; a handler writing
	// more gets its transaction rolled back and the client a 500. Default: the Runner's own
	// limit when it reports one (a *dedupe.Deduper does, and redisguard's Wrap passes it on),
	// else dedupe.DefaultMaxResponseBytes. New refuses a value above the Runner's limit,
	// which every such response would exceed at commit.
	MaxResponseBytes int
	// ReplayHeaders are response headers stored and replayed besides Content-Type and
	// Location (say "Content-Language" or "ETag").
	ReplayHeaders []string
	// Commit decides from the handler's status whether its transaction commits (and the
	// response is stored for replays). Default: status < 500; a 5xx rolls back and frees the key.
	Commit func(status int) bool
	// RetryAfter is sent with 409 and 503 responses; default the default runner's LockWait
	// (DefaultLockWait) when Runner is nil, else DefaultRetryAfter.
	RetryAfter time.Duration
	// TTL is how long keys are remembered; 0 means the Runner's default.
	TTL time.Duration
	// ProblemTypeBase prefixes the problem "type" URIs; default DefaultProblemTypeBase.
	ProblemTypeBase string
	// Logger, when set, receives one record per deduplicated request with its outcome
	// (first, replayed, rolled_back, in_progress, mismatch, invalid, too_large, error) and
	// never the request or response body.
	Logger *slog.Logger

	// Tracer, when set, gets one span per deduplicated request (component "dedupehttp"), with
	// the HTTP status sent; requests passed straight through get none. Nil costs nothing.
	Tracer dedupe.Tracer
	// TraceKeys puts the Idempotency-Key itself in the tracer's start data; by default
	// tracers get only its hash.
	TraceKeys bool
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultRetryAfter   = time.Second
	// DefaultLockWait is the LockWait of the default runner: how long a concurrent duplicate
	// waits for the first request before it gets 409.
	DefaultLockWait = 5 * time.Second
)

// Middleware makes handlers idempotent with the Idempotency-Key header: the handler runs in a
// transaction together with the key's claim, its response is stored with the key, and a retry
// with the same key gets the stored response back byte for byte, with Idempotent-Replayed:
// true. It is safe for concurrent use.
//
// Responses the middleware writes itself:
//
//	400 idempotency-key-missing     key required and absent
//	400 idempotency-key-malformed   several header lines, bad quoting, control bytes, > 255 bytes
//	413 request-too-large           body over MaxBodyBytes
//	422 idempotency-key-mismatch    key already used for a request with another fingerprint
//	400 request-body-unreadable     the request body could not be read
//	409 idempotency-key-in-progress first request still running past the Runner's LockWait (+ Retry-After)
//	503 idempotency-unavailable     the runner refused for want of a dependency (dedupe.ErrUnavailable:
//	                                Redis down with redisguard.FailClosed) (+ Retry-After)
//	500 internal-error              database failure, response too large to store
//
// all as application/problem+json (RFC 9457).
type Middleware struct {
	db          dedupe.DB
	runner      dedupe.Runner
	header      string
	fingerprint func(*http.Request, []byte) []byte
	onReplay    func(*http.Request, dedupe.Result)
	methods     map[string]bool
	route       func(*http.Request) string
	tenant      func(*http.Request) string
	maxBody     int64
	maxResp     int
	keep        []string // canonical names of headers stored for replays
	commit      func(int) bool
	retryAfter  string
	ttl         time.Duration
	problemBase string
	log         *slog.Logger
	tracer      dedupe.Tracer
	traceKeys   bool
}

// New returns a Middleware for cfg.
func New(cfg Config) (*Middleware, error) {
	if cfg.DB == nil {
		return nil, errors.New("dedupehttp: Config.DB is required")
	}
	m := &Middleware{
		db:          cfg.DB,
		runner:      cfg.Runner,
		header:      cmp.Or(cfg.Header, HeaderKey),
		fingerprint: cfg.Fingerprint,
		onReplay:    cfg.OnReplay,
		methods:     map[string]bool{},
		route:       cfg.Route,
		tenant:      cfg.Tenant,
		maxBody:     cfg.MaxBodyBytes,
		maxResp:     cfg.MaxResponseBytes,
		keep:        []string{"Content-Type", "Location"},
		commit:      cfg.Commit,
		ttl:         cfg.TTL,
		problemBase: cfg.ProblemTypeBase,
		log:         cfg.Logger,
		tracer:      cfg.Tracer,
		traceKeys:   cfg.TraceKeys,
	}
	retry := cmp.Or(cfg.RetryAfter, DefaultRetryAfter)
	if m.runner == nil {
		m.runner = dedupe.New(&dedupe.Options{LockWait: DefaultLockWait})
		retry = cmp.Or(cfg.RetryAfter, DefaultLockWait)
	}
	if cfg.RetryAfter < 0 {
		return nil, errors.New("dedupehttp: Config.RetryAfter is negative")
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxResponseBytes < 0 {
		return nil, errors.New("dedupehttp: a byte limit in Config is negative")
	}
	if textproto.CanonicalMIMEHeaderKey(m.header) == "" || strings.ContainsAny(m.header, " \t:") {
		return nil, fmt.Errorf("dedupehttp: Config.Header %q is not a header name", cfg.Header)
	}
	if m.fingerprint == nil {
		m.fingerprint = func(r *http.Request, body []byte) []byte {
			return dedupe.Fingerprint(r.Method, canonicalTarget(r), body)
		}
	}
	methods := cfg.Methods
	if len(methods) == 0 {
		methods = []string{http.MethodPost, http.MethodPatch}
	}
	for _, meth := range methods {
		m.methods[strings.ToUpper(meth)] = true
	}
	if m.route == nil {
		m.route = routePattern
	}
	if m.maxBody <= 0 {
		m.maxBody = DefaultMaxBodyBytes
	}
	runnerMax := 0
	if l, ok := m.runner.(interface{ MaxResponseBytes() int }); ok {
		runnerMax = l.MaxResponseBytes()
	}
	if runnerMax > 0 && m.maxResp > runnerMax {
		return nil, fmt.Errorf("dedupehttp: Config.MaxResponseBytes %d is above the Runner's limit %d", m.maxResp, runnerMax)
	}
	if m.maxResp <= 0 {
		m.maxResp = cmp.Or(runnerMax, dedupe.DefaultMaxResponseBytes)
	}
	for _, h := range cfg.ReplayHeaders {
		if c := textproto.CanonicalMIMEHeaderKey(h); !slices.Contains(m.keep, c) {
			m.keep = append(m.keep, c)
		}
	}
	if m.commit == nil {
		m.commit = func(status int) bool { return status < 500 }
	}
	m.retryAfter = retryAfter(retry)
	if m.problemBase == "" {
		m.problemBase = DefaultProblemTypeBase
	}
	return m, nil
}

// Required wraps next so that requests with a guarded method must carry an Idempotency-Key
// (400 without one).
func (m *Middleware) Required(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next, true) })
}

// Optional wraps next so that requests with a key are deduplicated and requests without one
// pass straight through (with no transaction in their context).
func (m *Middleware) Optional(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next, false) })
}

// rolledBack carries the response of a handler whose status says "do not commit", out of the
// rolled-back transaction to the client.
type rolledBack struct{ rec *recorder }

func (e *rolledBack) Error() string {
	return fmt.Sprintf("dedupehttp: handler answered %d; transaction rolled back", e.rec.statusCode())
}

var errResponseTooLarge = errors.New("dedupehttp: handler response larger than MaxResponseBytes")

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler, required bool) {
	if !m.methods[r.Method] {
		next.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	key, err := parseKeyIn(r.Header, m.header)
	if errors.Is(err, ErrKeyMissing) && !required {
		next.ServeHTTP(w, r)
		return
	}
	if m.tracer != nil {
		r = m.traceStart(r, key)
	}
	if err != nil {
		if errors.Is(err, ErrKeyMissing) {
			m.problem(w, http.StatusBadRequest, ProblemKeyMissing, "Idempotency-Key header required",
				"Send a unique Idempotency-Key with each new request and the same key when retrying it.")
		} else {
			m.problem(w, http.StatusBadRequest, ProblemKeyMalformed, "Idempotency-Key header malformed", err.Error())
		}
		m.logOutcome(r, "", "invalid", http.StatusBadRequest, dedupe.Result{}, start, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, m.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			m.problem(w, http.StatusRequestEntityTooLarge, ProblemRequestTooLarge, "Request body too large",
				fmt.Sprintf("The limit is %d bytes.", m.maxBody))
			m.logOutcome(r, key, "too_large", http.StatusRequestEntityTooLarge, dedupe.Result{}, start, nil)
			return
		}
		m.problem(w, http.StatusBadRequest, ProblemBodyUnreadable, "Request body unreadable", "")
		m.logOutcome(r, key, "invalid", http.StatusBadRequest, dedupe.Result{}, start, err)
		return
	}

	req := dedupe.Request{
		Scope:       m.scope(r),
		Key:         key,
		Fingerprint: m.fingerprint(r, body),
		TTL:         m.ttl,
	}
	var last *recorder // the attempt whose transaction committed, when the function ran
	res, err := m.runner.Do(r.Context(), m.db, req, func(ctx context.Context, tx pgx.Tx) (dedupe.Response, error) {
		// Do may run this more than once (serialization retries): each attempt gets a fresh
		// recorder and a fresh reader over the same body bytes.
		rec := newRecorder(m.maxResp)
		next.ServeHTTP(rec, withBody(r.WithContext(withKey(withTx(ctx, tx), key)), body))
		if rec.large {
			return dedupe.Response{}, errResponseTooLarge
		}
		if !m.commit(rec.statusCode()) {
			return dedupe.Response{}, &rolledBack{rec}
		}
		last = rec
		return dedupe.Response{Status: rec.statusCode(), Header: m.kept(rec.header), Body: rec.body.Bytes()}, nil
	})
	m.respond(w, r, key, res, err, last, start)
}

func (m *Middleware) respond(w http.ResponseWriter, r *http.Request, key string, res dedupe.Result, err error, last *recorder, start time.Time) {
	var rb *rolledBack
	switch {
	case err == nil && res.Replayed():
		h := w.Header()
		for k, vs := range res.Response.Header {
			h[k] = slices.Clone(vs)
		}
		h.Set(HeaderReplayed, "true")
		w.WriteHeader(res.Response.Status)
		_, _ = w.Write(res.Response.Body)
		m.logOutcome(r, key, "replayed", res.Response.Status, res, start, nil)
		if m.onReplay != nil {
			m.onReplay(r, res)
		}
	case err == nil && last != nil:
		writeRecorded(w, last)
		m.logOutcome(r, key, "first", last.statusCode(), res, start, nil)
	case err == nil: // a Runner that answered without running the handler and without replaying
		h := w.Header()
		for k, vs := range res.Response.Header {
			h[k] = slices.Clone(vs)
		}
		w.WriteHeader(res.Response.Status)
		_, _ = w.Write(res.Response.Body)
		m.logOutcome(r, key, "first", res.Response.Status, res, start, nil)
	case errors.As(err, &rb):
		writeRecorded(w, rb.rec)
		m.logOutcome(r, key, "rolled_back", rb.rec.statusCode(), res, start, nil)
	case errors.Is(err, dedupe.ErrFingerprintMismatch):
		m.problem(w, http.StatusUnprocessableEntity, ProblemKeyMismatch, "Idempotency-Key reused for a different request",
			"This key was already used with another method, path or body. Use a new key for a new request.")
		m.logOutcome(r, key, "mismatch", http.StatusUnprocessableEntity, res, start, nil)
	case errors.Is(err, dedupe.ErrInProgress):
		w.Header().Set("Retry-After", m.retryAfter)
		m.problem(w, http.StatusConflict, ProblemKeyInProgress, "A request with this Idempotency-Key is in progress",
			"Retry after the time in Retry-After to receive its response.")
		m.logOutcome(r, key, "in_progress", http.StatusConflict, res, start, nil)
	case errors.Is(err, dedupe.ErrUnavailable):
		w.Header().Set("Retry-After", m.retryAfter)
		m.problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "Idempotency check unavailable",
			"A service the idempotency check depends on is unavailable. Retry with the same key after the time in Retry-After.")
		m.logOutcome(r, key, "unavailable", http.StatusServiceUnavailable, res, start, err)
	case errors.Is(err, errResponseTooLarge), errors.Is(err, dedupe.ErrResponseTooLarge):
		m.problem(w, http.StatusInternalServerError, ProblemInternal, "Response too large to store", "")
		m.logOutcome(r, key, "too_large", http.StatusInternalServerError, res, start, err)
	default:
		m.problem(w, http.StatusInternalServerError, ProblemInternal, "Internal error", "")
		m.logOutcome(r, key, "error", http.StatusInternalServerError, res, start, err)
	}
}

func writeRecorded(w http.ResponseWriter, rec *recorder) {
	h := w.Header()
	for k, vs := range rec.header {
		h[k] = vs
	}
	w.WriteHeader(rec.statusCode())
	_, _ = w.Write(rec.body.Bytes())
}

// kept returns the headers stored for replays.
func (m *Middleware) kept(h http.Header) map[string][]string {
	var out map[string][]string
	for _, k := range m.keep {
		if vs := h.Values(k); len(vs) > 0 {
			if out == nil {
				out = make(map[string][]string, len(m.keep))
			}
			out[k] = slices.Clone(vs)
		}
	}
	return out
}

// scope is method + route (+ tenant), hashed when it would exceed dedupe.MaxScopeLen.
func (m *Middleware) scope(r *http.Request) string {
	s := r.Method + " " + m.route(r)
	if m.tenant != nil {
		if t := m.tenant(r); t != "" {
			s += " tenant=" + t
		}
	}
	if dedupe.ValidateScope(s) != nil {
		sum := sha256.Sum256([]byte(s))
		s = "sha256:" + hex.EncodeToString(sum[:])
	}
	return s
}

// routePattern is the ServeMux pattern without its method, or the path when unrouted.
func routePattern(r *http.Request) string {
	if p := r.Pattern; p != "" {
		if _, rest, ok := strings.Cut(p, " "); ok {
			return strings.TrimLeft(rest, " \t")
		}
		return p
	}
	return r.URL.EscapedPath()
}

// canonicalTarget is the path plus the query with its parameters sorted, so that
// ?a=1&b=2 and ?b=2&a=1 fingerprint alike. A query that does not parse (a ';' separator, a
// bad %-escape) is kept as its raw bytes, after "?!": url.Values silently drops the pairs it
// cannot parse, which would make ?amount=1;to=alice and ?amount=9;to=mallory look alike.
// Encode escapes '!', so the raw form never equals a canonical one.
func canonicalTarget(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return r.URL.EscapedPath()
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return r.URL.EscapedPath() + "?!" + r.URL.RawQuery
	}
	return r.URL.EscapedPath() + "?" + q.Encode()
}

func withBody(r *http.Request, body []byte) *http.Request {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return r
}

func (m *Middleware) logOutcome(r *http.Request, key, outcome string, status int, res dedupe.Result, start time.Time, err error) {
	attempts := res.Attempts
	m.traceEnd(r, outcome, status, res, err)
	if m.log == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", m.route(r)),
		slog.String("key", key),
		slog.String("outcome", outcome),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
	}
	if attempts > 1 {
		attrs = append(attrs, slog.Int("attempts", attempts))
	}
	level := slog.LevelInfo
	if err != nil && outcome == "error" {
		level = slog.LevelError
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	m.log.LogAttrs(r.Context(), level, "idempotent request", attrs...)
}
