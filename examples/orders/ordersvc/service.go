package ordersvc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/examples/payments/payclient"
	"github.com/pgonce/pgonce/flow"
	"github.com/pgonce/pgonce/redisguard"
)

// Config configures the service. DatabaseURL is required.
type Config struct {
	// DatabaseURL is the PostgreSQL URL the service's pool uses (env DATABASE_URL). Its
	// default_query_exec_mode parameter, which pgx reads, picks how statements are sent:
	// behind PgBouncer in transaction pooling use exec or simple_protocol, since pgx's
	// default (cache_statement) keeps prepared statements on one server connection.
	DatabaseURL string
	// MigrateURL is where Open applies the migrations; default DatabaseURL (env
	// MIGRATE_DATABASE_URL). golang-migrate holds a session advisory lock while it migrates,
	// which a transaction pooler cannot keep: behind PgBouncer set it to a direct URL.
	MigrateURL string
	// RedisURL, when set, puts the Redis guard in front of PostgreSQL (env REDIS_URL).
	RedisURL string
	// RedisPrefix starts the service's Redis keys; default "orders:".
	RedisPrefix string
	// RedisTimeout bounds each Redis call of the guard; default 100ms. Past it the request
	// is served through PostgreSQL alone (see redisguard.GuardOptions.Timeout).
	RedisTimeout time.Duration
	// Instance names this process in logs and in the reports it builds; default host:pid.
	Instance string
	// LockWait bounds how long a request waits for a concurrent request with the same key
	// before answering 409; default 5s.
	LockWait time.Duration
	// Logger receives structured logs; default a JSON logger on stderr.
	Logger *slog.Logger
	// MaxConns caps the database pool; default 16.
	MaxConns int32
	// DedupeLayout and DedupeTTL are the idempotency keys' dedupe.Options.Layout and
	// dedupe.Options.TTL (defaults: the one-table layout, 24h).
	DedupeLayout dedupe.Layout
	DedupeTTL    time.Duration
	// AfterOrder, when set, runs inside the order's transaction after the order row and the
	// stock change are written. An error answers 500 and rolls everything back (the key stays
	// free). Use it for work that must commit with the order, such as an outbox event; the
	// soak test uses it to inject failures.
	AfterOrder func(ctx context.Context, r *http.Request, tx pgx.Tx, o Order) error

	// Payments, when set, makes POST /orders a paid checkout: a phased request (package
	// flow) that reserves the stock, charges this payment provider with a key derived from
	// the request, then confirms the order (or, after a decline, gives the stock back and
	// answers 402). A crash between the steps is resumed by the next retry or by the
	// completer this service runs. Without it an order is one local transaction, as before
	// (AfterOrder and the Redis guard apply to that path only).
	Payments *payclient.Client
	// Notify, when set with Payments, enqueues the order-confirmed notification inside the
	// confirming transaction (the transactional outbox; delivery.Client.EnqueueTx).
	Notify func(ctx context.Context, tx pgx.Tx, key string, body []byte) error
	// Lease is the paid checkout's lease (flow.Options.Lease); default 5s. A request whose
	// instance died is taken over once it runs out.
	Lease time.Duration
	// CompleteEvery is how often the completer looks for requests whose lease ran out;
	// default 1s. Negative: no completer in this instance.
	CompleteEvery time.Duration
}

// Service is the order service: its HTTP API and its background jobs.
type Service struct {
	pool     *pgxpool.Pool
	redis    *redis.Client // nil without REDIS_URL
	dedupe   *dedupe.Deduper
	mw       *dedupehttp.Middleware
	log      *slog.Logger
	instance string
	after    func(context.Context, *http.Request, pgx.Tx, Order) error
	closers  []func()

	payments *payclient.Client // nil: orders are one local transaction
	notify   func(context.Context, pgx.Tx, string, []byte) error
	flows    *flow.Runner
}

// Open connects to PostgreSQL (and Redis), applies the migrations and returns the service.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("ordersvc: DatabaseURL is required (env DATABASE_URL)")
	}
	s := &Service{
		log:      cmp.Or(cfg.Logger, slog.New(slog.NewJSONHandler(os.Stderr, nil))),
		instance: cmp.Or(cfg.Instance, defaultInstance()),
		after:    cfg.AfterOrder,
	}
	s.log = s.log.With("instance", s.instance)
	if err := Migrate(ctx, cmp.Or(cfg.MigrateURL, cfg.DatabaseURL)); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("ordersvc: %w", err)
	}
	pcfg.MaxConns = cmp.Or(cfg.MaxConns, 16)
	if s.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, fmt.Errorf("ordersvc: %w", err)
	}
	s.closers = append(s.closers, s.pool.Close)
	s.dedupe = dedupe.New(&dedupe.Options{LockWait: cmp.Or(cfg.LockWait, 5*time.Second), Layout: cfg.DedupeLayout, TTL: cfg.DedupeTTL})
	var runner dedupe.Runner = s.dedupe
	if cfg.RedisURL != "" {
		ropts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("ordersvc: REDIS_URL: %w", err)
		}
		// The guard bounds each Redis call through the context; go-redis honours context
		// deadlines only with this set.
		ropts.ContextTimeoutEnabled = true
		s.redis = redis.NewClient(ropts)
		s.closers = append(s.closers, func() { _ = s.redis.Close() })
		// Redis in front: duplicates of a request in flight get 409 at once, committed
		// responses replay from Redis without touching PostgreSQL, and when Redis is slow
		// or down requests go straight to PostgreSQL, whose unique index stays the authority.
		guard, err := redisguard.NewGuard(s.redis, &redisguard.GuardOptions{
			Prefix:  cmp.Or(cfg.RedisPrefix, "orders:"),
			Timeout: cfg.RedisTimeout,
			OnError: func(ctx context.Context, op string, err error) {
				s.log.WarnContext(ctx, "redis unavailable, serving through PostgreSQL", "op", op, "error", err)
			},
		})
		if err != nil {
			s.Close()
			return nil, err
		}
		runner = guard.Wrap(s.dedupe)
	}
	if cfg.Payments != nil {
		if err := s.startCheckout(cfg); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.mw, err = dedupehttp.New(dedupehttp.Config{
		DB:     s.pool,
		Runner: runner,
		Logger: s.log,
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// startCheckout sets up the paid checkout's flow runner and starts its completer, which
// Close stops.
func (s *Service) startCheckout(cfg Config) error {
	s.payments, s.notify = cfg.Payments, cfg.Notify
	var err error
	s.flows, err = flow.New(s.pool, []flow.Flow{s.checkoutFlow()}, &flow.Options{
		Lease: cmp.Or(cfg.Lease, 5*time.Second),
		OnReconcile: func(ctx context.Context, p flow.Pending) {
			s.log.ErrorContext(ctx, "checkout needs reconciliation", "key_hash", dedupe.KeyHash(p.Key), "recovery_point", p.RecoveryPoint)
		},
	})
	if err != nil {
		return err
	}
	every := cmp.Or(cfg.CompleteEvery, time.Second)
	if every < 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.flows.RunCompleter(ctx, every, func(err error) {
			s.log.WarnContext(ctx, "completer round failed", "error", err)
		})
	}()
	// Closers run last first: the completer stops before the pool closes.
	s.closers = append(s.closers, func() { cancel(); <-done })
	return nil
}

// Flows is the paid checkout's flow runner, nil without Config.Payments (for tests and tools).
func (s *Service) Flows() *flow.Runner { return s.flows }

// Close releases the service's connections.
func (s *Service) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// Handler returns the HTTP API:
//
//	POST /orders          create an order (Idempotency-Key required)
//	GET  /orders/{id}     read an order
//	GET  /products/{sku}  stock and version of a product
//	GET  /healthz         PostgreSQL (and Redis) reachable
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	// The middleware wraps the route's handler (not the whole mux), so the key's scope
	// is the route pattern: "POST /orders".
	if s.flows != nil {
		mux.HandleFunc("POST /orders", s.checkout)
	} else {
		mux.Handle("POST /orders", s.mw.Required(http.HandlerFunc(s.createOrder)))
	}
	mux.HandleFunc("GET /orders/{id}", s.getOrder)
	mux.HandleFunc("GET /products/{sku}", s.getProduct)
	mux.HandleFunc("GET /healthz", s.healthz)
	return mux
}

// Logger is the service's logger, tagged with its instance name.
func (s *Service) Logger() *slog.Logger { return s.log }

// Pool is the service's database pool (for tests and tools).
func (s *Service) Pool() *pgxpool.Pool { return s.pool }

func defaultInstance() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}
