package paysvc

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
)

// Config configures a Service. DB is required; every other zero value is a default.
type Config struct {
	// DB is the provider's database, already migrated (Migrate). The service never closes it.
	DB *pgxpool.Pool
	// Faults sets how often the provider misbehaves; the zero value never does.
	Faults Faults
	// LockWait bounds how long a request waits for a concurrent request with the same key
	// before answering 409; default dedupehttp.DefaultLockWait (5s).
	LockWait time.Duration
	// Logger receives one record per deduplicated request (dedupehttp's) and one per fault
	// fired; default: none.
	Logger *slog.Logger
}

// ErrNoDB is returned by New without Config.DB.
var ErrNoDB = errors.New("paysvc: Config.DB is required")

// Service is the provider: its HTTP API over the caller's pool. Safe for concurrent use.
type Service struct {
	db     *pgxpool.Pool
	faults Faults
	log    *slog.Logger
	mw     *dedupehttp.Middleware
	counts faultCounters
}

// New checks cfg and returns the service; it does no I/O.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, ErrNoDB
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, err
	}
	if cfg.LockWait < 0 {
		return nil, errors.New("paysvc: Config.LockWait is negative")
	}
	s := &Service{
		db:     cfg.DB,
		faults: cfg.Faults,
		log:    cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
	}
	var err error
	s.mw, err = dedupehttp.New(dedupehttp.Config{
		DB:     cfg.DB,
		Runner: dedupe.New(&dedupe.Options{LockWait: cmp.Or(cfg.LockWait, dedupehttp.DefaultLockWait)}),
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Handler returns the HTTP API (see the package documentation for the routes).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	// The middleware wraps each route's handler, so the key's scope is the route pattern and
	// a key used for a charge and for a notification never collide.
	mux.Handle(RouteCharges, s.faulty(RouteCharges, &s.counts.charges, s.mw.Required(http.HandlerFunc(s.createCharge))))
	mux.Handle(RouteNotifications, s.countArrival(s.faulty(RouteNotifications, &s.counts.notifications,
		s.mw.Required(http.HandlerFunc(s.receiveNotification)))))
	mux.HandleFunc("GET /charges", s.listCharges)
	mux.HandleFunc("GET /stats", s.stats)
	mux.HandleFunc("GET /faults", s.faultCounts)
	mux.HandleFunc("GET /healthz", s.healthz)
	return mux
}

func (s *Service) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "PostgreSQL unreachable", "")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// Problem types of the provider's own refusals (RFC 9457).
const (
	ProblemInvalidCharge       = "https://pgonce.dev/problems/payments/invalid-charge"       // 400, stored
	ProblemInvalidNotification = "https://pgonce.dev/problems/payments/invalid-notification" // 400, stored
	ProblemInvalidQuery        = "https://pgonce.dev/problems/payments/invalid-query"        // 400
	ProblemUnavailable         = "https://pgonce.dev/problems/payments/unavailable"          // 503, never stored
	ProblemInternal            = "https://pgonce.dev/problems/payments/internal"             // 500, never stored
)

func problem(w http.ResponseWriter, status int, typ, title, detail string) {
	dedupehttp.WriteProblem(w, dedupehttp.Problem{Type: typ, Title: title, Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		problem(w, http.StatusInternalServerError, ProblemInternal, "Internal error", "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// newID returns prefix and 24 random hex digits.
func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + hex.EncodeToString(b[:])
}
