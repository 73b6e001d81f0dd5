package delivery

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Config configures a Client. A nil *Config means every default; each zero field means the
// default noted on it.
type Config struct {
	// Schema is where River's tables are (as Migrate created them); default the connection's
	// search_path.
	Schema string
	// Workers is how many deliveries one Client runs at once; default DefaultWorkers.
	Workers int
	// HTTPClient sends the requests; default a client whose transport keeps Workers idle
	// connections per host and which does not follow redirects (a 3xx is an answer, see
	// Client). Its Timeout, if set, applies on top of RequestTimeout.
	HTTPClient *http.Client
	// Method is the HTTP method of every delivery; default POST.
	Method string
	// RequestTimeout bounds one attempt, from fetching the message to reading the status;
	// default DefaultRequestTimeout. An attempt that runs out is retried.
	RequestTimeout time.Duration
	// MaxAttempts bounds the attempts of one message; after the last failed attempt the
	// message is dead. Default DefaultMaxAttempts. It is fixed when a message is forwarded
	// from the outbox, by whichever started Client forwards it (and renewed by Redrive).
	MaxAttempts int
	// RetryBase and RetryMax shape the wait before a retry: attempt n waits a random time
	// between half and all of RetryBase·2^(n-1), capped at RetryMax ("equal jitter"). Defaults
	// DefaultRetryBase and DefaultRetryMax: with DefaultMaxAttempts, 7 to 13 hours of
	// retries in all, inside a receiver's usual 24-hour key window.
	RetryBase, RetryMax time.Duration
	// MaxRetryAfter caps a receiver's Retry-After; default DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// OrderingRecheck is the shortest wait of a message held back by an earlier undelivered
	// message with the same ordering key; default DefaultOrderingRecheck. It waits longer
	// when the earlier message is itself scheduled later (a retry), up to a minute.
	OrderingRecheck time.Duration
	// RescueAfter is how long a delivery may stay in flight before another Client takes
	// it over (its worker was killed): the message is then retried with the same key.
	// Default DefaultRescueAfter; it must exceed RequestTimeout.
	RescueAfter time.Duration
	// DeadRetention is how long dead messages stay listed before River's cleaner deletes
	// them; default DefaultDeadRetention. Delivered messages are kept River's default of
	// 24 hours. (The cleaner applies one retention to every River queue in Schema.)
	DeadRetention time.Duration
	// PollOnly makes the Client poll for new messages instead of waiting for PostgreSQL
	// notifications (LISTEN): required behind PgBouncer in transaction pooling, which
	// cannot keep a LISTEN. A new message then waits up to FetchPollInterval.
	PollOnly bool
	// FetchCooldown is the least time between two fetches of messages while they keep
	// coming; default DefaultFetchCooldown. It caps throughput at about Workers ÷
	// FetchCooldown: River's own default (100 ms) gives about 300 messages/s on 32 workers.
	FetchCooldown time.Duration
	// FetchPollInterval is how often an idle Client looks for messages without being
	// notified; default DefaultFetchPollInterval, or DefaultPollOnlyInterval with PollOnly.
	FetchPollInterval time.Duration
	// ForwardInterval is how often an idle Client looks for committed messages in the outbox
	// to hand to its workers (one round trip while the outbox is empty); default
	// DefaultForwardInterval. It bounds the latency the outbox adds when messages are few.
	ForwardInterval time.Duration
	// Logger receives River's logs; default River's (warnings and errors to stdout).
	Logger *slog.Logger
	// Tracer, when set, is told of every attempt and its outcome.
	Tracer Tracer
}

// Defaults of Config.
const (
	DefaultWorkers           = 32
	DefaultRequestTimeout    = 30 * time.Second
	DefaultMaxAttempts       = 25
	DefaultRetryBase         = time.Second
	DefaultRetryMax          = time.Hour
	DefaultMaxRetryAfter     = time.Hour
	DefaultOrderingRecheck   = 50 * time.Millisecond
	DefaultRescueAfter       = 5 * time.Minute
	DefaultDeadRetention     = 7 * 24 * time.Hour
	DefaultFetchCooldown     = time.Millisecond
	DefaultFetchPollInterval = time.Second
	DefaultPollOnlyInterval  = 100 * time.Millisecond
)

// queueName is the River queue of deliveries, and jobKind the kind of their jobs.
const (
	queueName = "pgonce_delivery"
	jobKind   = "pgonce_delivery"
)

// withDefaults returns a copy of c with defaults filled in, or an error wrapping
// ErrInvalidConfig.
func (c *Config) withDefaults() (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	for name, d := range map[string]time.Duration{
		"RequestTimeout": cfg.RequestTimeout, "RetryBase": cfg.RetryBase, "RetryMax": cfg.RetryMax,
		"MaxRetryAfter": cfg.MaxRetryAfter, "OrderingRecheck": cfg.OrderingRecheck,
		"RescueAfter": cfg.RescueAfter, "FetchCooldown": cfg.FetchCooldown,
		"FetchPollInterval": cfg.FetchPollInterval, "DeadRetention": cfg.DeadRetention,
		"ForwardInterval": cfg.ForwardInterval,
	} {
		if d < 0 {
			return bad("%s is negative", name)
		}
	}
	if cfg.Workers < 0 || cfg.Workers > 10_000 {
		return bad("Workers %d is not in 0..10000", cfg.Workers)
	}
	if cfg.MaxAttempts < 0 {
		return bad("MaxAttempts is negative")
	}
	if cfg.FetchCooldown > 0 && cfg.FetchCooldown < time.Millisecond {
		return bad("FetchCooldown is under River's minimum of 1ms")
	}
	if cfg.FetchPollInterval > 0 && cfg.FetchPollInterval < time.Millisecond {
		return bad("FetchPollInterval is under River's minimum of 1ms")
	}
	if cfg.Method != "" && !validToken(cfg.Method) {
		return bad("Method %q is not an HTTP method", cfg.Method)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Method == "" {
		cfg.Method = http.MethodPost
	}
	def(&cfg.RequestTimeout, DefaultRequestTimeout)
	def(&cfg.RetryBase, DefaultRetryBase)
	def(&cfg.RetryMax, DefaultRetryMax)
	def(&cfg.MaxRetryAfter, DefaultMaxRetryAfter)
	def(&cfg.OrderingRecheck, DefaultOrderingRecheck)
	def(&cfg.RescueAfter, DefaultRescueAfter)
	def(&cfg.FetchCooldown, DefaultFetchCooldown)
	def(&cfg.DeadRetention, DefaultDeadRetention)
	def(&cfg.ForwardInterval, DefaultForwardInterval)
	if cfg.PollOnly {
		def(&cfg.FetchPollInterval, DefaultPollOnlyInterval)
	} else {
		def(&cfg.FetchPollInterval, DefaultFetchPollInterval)
	}
	if cfg.RetryMax < cfg.RetryBase {
		return bad("RetryMax %v is below RetryBase %v", cfg.RetryMax, cfg.RetryBase)
	}
	if cfg.RescueAfter <= cfg.RequestTimeout {
		return bad("RescueAfter %v must exceed RequestTimeout %v, or live deliveries would be taken over", cfg.RescueAfter, cfg.RequestTimeout)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultHTTPClient(cfg.Workers)
	}
	return cfg, nil
}

// defaultHTTPClient keeps a connection per worker to each receiver (http.DefaultTransport
// keeps two, so 32 workers would open and close connections all the time) and returns a
// redirect as the answer: following a 303 would turn the POST into a GET, whose 200 would
// count as delivered.
func defaultHTTPClient(workers int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = workers
	t.MaxIdleConns = max(t.MaxIdleConns, workers)
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// validToken reports whether s is an RFC 9110 token (a method or header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
