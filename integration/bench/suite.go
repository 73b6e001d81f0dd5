package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/integration/harness"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/redisguard"
)

// RedisDB is the Redis database the benchmarks use and flush; nothing else uses it.
const RedisDB = 15

// Env is what a benchmark run works with.
type Env struct {
	Pool *pgxpool.Pool
	// NetPool reaches the same database through a proxy that adds NetLatency each way, as a
	// network between an application and its database does.
	NetPool *pgxpool.Pool
	Deduper *dedupe.Deduper
	Redis   *redis.Client
	Guard   *redisguard.Guard
	Locker  *redisguard.Locker
	BSM     *redislock.Client
	Redsync *redsync.Redsync
}

// Open creates a fresh schema in the database at baseURL with the toolkit's migrations and the
// benchmark tables, a pool big enough for 32 clients, and clients for database RedisDB of the
// Redis at redisURL.
func Open(ctx context.Context, baseURL, redisURL string) (*Env, func(), error) {
	db, drop, err := pgtest.Create(ctx, baseURL, "bench", &pgtest.Options{MaxConns: 40})
	if err != nil {
		return nil, nil, err
	}
	if _, err := db.Pool.Exec(ctx, Schema); err != nil {
		drop()
		return nil, nil, fmt.Errorf("bench schema: %w", err)
	}
	ropts, err := redis.ParseURL(redisURL)
	if err != nil {
		drop()
		return nil, nil, err
	}
	ropts.DB, ropts.PoolSize, ropts.ContextTimeoutEnabled = RedisDB, 40, true
	rdb := redis.NewClient(ropts)
	locker, err := redisguard.NewLocker(rdb, &redisguard.LockerOptions{Prefix: "bench:ours:"})
	// A generous timeout: on a loaded machine a 100 ms check can time out, and the bench
	// measures throughput, not the failure policy.
	guard, gerr := redisguard.NewGuard(rdb, &redisguard.GuardOptions{Prefix: "bench:", Timeout: 2 * time.Second})
	if err = errors.Join(err, gerr); err != nil {
		_ = rdb.Close()
		drop()
		return nil, nil, err
	}
	proxy, netPool, err := openNetPool(ctx, db.URL)
	if err != nil {
		_ = rdb.Close()
		drop()
		return nil, nil, err
	}
	env := &Env{
		Pool:    db.Pool,
		NetPool: netPool,
		Deduper: dedupe.New(nil),
		Redis:   rdb,
		Guard:   guard,
		Locker:  locker,
		BSM:     redislock.New(rdb),
		Redsync: newRedsync(rdb),
	}
	return env, func() { netPool.Close(); proxy.Close(); _ = rdb.Close(); drop() }, nil
}

// Workload is one cell's key source and operation.
type Workload struct {
	Keys     *Keys
	Do       Do
	Attempts *atomic.Int64             // set by cases that count attempts per success
	During   func(ctx context.Context) // runs beside the cell until it ends (fault injection)
}

// Case is one row family of the comparison.
type Case struct {
	Group   string // "create", "locking", "redis"
	ID      string // short name, used in benchmark names
	Name    string // label in the table
	Prepare func(ctx context.Context, env *Env, cell string) (Workload, error)
}

// DupShare is the share of logical requests sent twice at once in create runs.
const DupShare = 0.1

// FlushEvery is how often the "Redis loses its keys" cells flush the benchmark's database.
const FlushEvery = time.Second

func newKeys(cell string) *Keys { return &Keys{Prefix: cell, DupShare: DupShare} }

func newKeysWithRetries(cell string) *Keys {
	return &Keys{Prefix: cell, DupShare: DupShare, RetryShare: 0.1}
}

func flusher(rdb *redis.Client) func(ctx context.Context) {
	return func(ctx context.Context) {
		t := time.NewTicker(FlushEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = rdb.FlushDB(ctx).Err()
			}
		}
	}
}

func seedReplays(ctx context.Context, env *Env, do Do, cell string) (*Keys, error) {
	reuse := make([]string, 2000)
	for i := range reuse {
		reuse[i] = fmt.Sprintf("%s-%d", cell, i)
		if err := do(ctx, Send{Key: reuse[i], Payload: payload(reuse[i])}); err != nil {
			return nil, err
		}
	}
	return &Keys{Reuse: reuse}, nil
}

// Cases lists every row of the comparison, in table order.
func Cases() []Case {
	create := func(id, name string, prep func(ctx context.Context, env *Env, cell string) (Workload, error)) Case {
		return Case{Group: "create", ID: id, Name: name, Prepare: prep}
	}
	locking := func(id, name string, mk func(*pgxpool.Pool, *atomic.Int64) Do) Case {
		return Case{Group: "locking", ID: id, Name: name, Prepare: func(_ context.Context, env *Env, cell string) (Workload, error) {
			n := &atomic.Int64{}
			return Workload{Keys: newKeys(cell), Do: mk(env.Pool, n), Attempts: n}, nil
		}}
	}
	redisCase := func(id, name string, mk func(env *Env, cell string) Do) Case {
		return Case{Group: "redis", ID: id, Name: name, Prepare: func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: &Keys{Prefix: cell}, Do: mk(env, cell)}, nil
		}}
	}
	return []Case{
		create("plain", "1 plain transaction, no dedupe (the ceiling)", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: Plain(env.Pool)}, nil
		}),
		create("toolkit", "2 toolkit dedupe core", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: Toolkit(env.Pool, env.Deduper)}, nil
		}),
		create("hand-key", "2a plain + the key row, by hand", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: KeyRowByHand(env.Pool)}, nil
		}),
		create("hand-key-response", "2b plain + key row + response UPDATE, by hand", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: KeyRowAndResponseByHand(env.Pool)}, nil
		}),
		create("hand-pipelined", "2c as 2b, in plain's 3 round trips (pipelined), by hand", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: KeyRowAndResponsePipelined(env.Pool)}, nil
		}),
		create("hand-claim-last", "2d claim-last by hand: key + response inserted with COMMIT, plain's round trips", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: ClaimLastByHand(env.Pool)}, nil
		}),
		create("hand-lock-first", "2f lock-first by hand: advisory lock + lookup with BEGIN, key + response inserted with COMMIT", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: LockFirstByHand(env.Pool)}, nil
		}),
		create("replay", "3 toolkit replay (keys committed)", func(ctx context.Context, env *Env, cell string) (Workload, error) {
			do := Toolkit(env.Pool, env.Deduper)
			keys, err := seedReplays(ctx, env, do, cell)
			return Workload{Keys: keys, Do: do}, err
		}),
		create("redis-replay", "4 toolkit + Redis guard, replays from Redis", func(ctx context.Context, env *Env, cell string) (Workload, error) {
			do := ToolkitRedis(env.Pool, env.Deduper, env.Guard)
			keys, err := seedReplays(ctx, env, do, cell)
			return Workload{Keys: keys, Do: do}, err
		}),
		create("redis-flushed", "4b toolkit + Redis guard, Redis flushed every 1s, 10% retries", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeysWithRetries(cell), Do: ToolkitRedis(env.Pool, env.Deduper, env.Guard), During: flusher(env.Redis)}, nil
		}),
		create("naive", "5 naive check-then-insert", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: Naive(env.Pool)}, nil
		}),
		create("lockcache", "6 Redis lock + result cache, 10% retries", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeysWithRetries(cell), Do: LockAndCache(env.Pool, env.Redis, "bench:lc:")}, nil
		}),
		create("lockcache-flushed", "6b Redis lock + result cache, Redis flushed every 1s, 10% retries", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeysWithRetries(cell), Do: LockAndCache(env.Pool, env.Redis, "bench:lc:"), During: flusher(env.Redis)}, nil
		}),
		create("stripe", "7 Stripe-style (3 transactions)", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: StripeStyle(env.Pool)}, nil
		}),
		create("orders-plain", "8 order workload (FOR UPDATE, decrement, insert), plain", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: OrdersPlain(env.Pool)}, nil
		}),
		create("orders-toolkit", "8a order workload in the dedupe core", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: OrdersToolkit(env.Pool, env.Deduper)}, nil
		}),
		create("net-plain", "9 order workload, plain, 0.5 ms each way (proxy)", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: OrdersPlain(env.NetPool)}, nil
		}),
		create("net-toolkit", "9a order workload in the dedupe core, 0.5 ms each way (proxy)", func(_ context.Context, env *Env, cell string) (Workload, error) {
			return Workload{Keys: newKeys(cell), Do: OrdersToolkit(env.NetPool, env.Deduper)}, nil
		}),
		locking("optimistic", "hot row: optimistic.Retry + Get/Update", OptimisticHelper),
		locking("optimistic-hand", "hot row: the same optimistic SQL by hand", OptimisticByHand),
		locking("forupdate", "hot row: pessimistic.RowLock.Row (FOR UPDATE)", ForUpdateHelper),
		locking("forupdate-hand", "hot row: SELECT ... FOR UPDATE by hand", ForUpdateByHand),
		locking("atomic", "hot row: one UPDATE stock = stock - 1 (reference)", AtomicUpdate),
		redisCase("guard-check", "redis: guard Check (first sighting)", func(env *Env, _ string) Do { return GuardCheck(env.Guard) }),
		redisCase("incr", "redis: bare INCR", func(env *Env, cell string) Do { return BareIncr(env.Redis, "bench:") }),
		redisCase("lock-ours", "redis: redisguard lock obtain+release", func(env *Env, _ string) Do { return OurLock(env.Locker) }),
		redisCase("lock-bsm", "redis: bsm/redislock obtain+release", func(env *Env, _ string) Do { return BSMLock(env.BSM, "bench:bsm:") }),
		redisCase("lock-redsync", "redis: redsync lock+unlock", func(env *Env, _ string) Do { return RedsyncLock(env.Redsync, "bench:rs:") }),
	}
}

// Measurement is one cell's result.
type Measurement struct {
	Case     Case
	Clients  int
	Stats    Stats
	Dups     int     // duplicate effects (create cases)
	Attempts float64 // attempts per success (locking cases)
	Allocs   float64 // heap allocations per operation in this process (client side)
}

// Cell is a prepared cell: database and Redis reset, keys seeded, ready to run.
type Cell struct {
	env     *Env
	c       Case
	clients int
	w       Workload
}

// PrepareCell resets the database and Redis and prepares case c for clients clients.
func PrepareCell(ctx context.Context, env *Env, c Case, clients int) (*Cell, error) {
	if _, err := env.Pool.Exec(ctx, Reset); err != nil {
		return nil, err
	}
	if err := env.Redis.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}
	w, err := c.Prepare(ctx, env, fmt.Sprintf("%s-%d-%d", c.ID, clients, time.Now().UnixNano()))
	if err != nil {
		return nil, err
	}
	return &Cell{env: env, c: c, clients: clients, w: w}, nil
}

// Run runs the cell for warmup+duration (n == 0) or for exactly n operations, then reads the
// duplicate effects and attempts from the database.
func (cell *Cell) Run(ctx context.Context, warmup, duration time.Duration, n int) (Measurement, error) {
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if cell.w.During != nil {
			cell.w.During(runCtx)
		}
	}()
	if warmup > 0 {
		Run(ctx, cell.clients, 0, warmup, 0, cell.w.Keys, cell.w.Do)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	st := Run(ctx, cell.clients, 0, duration, n, cell.w.Keys, cell.w.Do)
	runtime.ReadMemStats(&after)
	stop()
	<-done
	m := Measurement{Case: cell.c, Clients: cell.clients, Stats: st}
	if st.Sends > 0 {
		m.Allocs = float64(after.Mallocs-before.Mallocs) / float64(st.Sends)
	}
	if st.Errors > 0 {
		return m, fmt.Errorf("%s clients=%d: %d errors, first: %w", cell.c.ID, cell.clients, st.Errors, st.FirstErr)
	}
	var err error
	if cell.c.Group == "create" {
		if m.Dups, err = DuplicateEffects(ctx, cell.env.Pool); err != nil {
			return m, err
		}
	}
	if cell.w.Attempts != nil {
		// Successes and attempts both include the warm-up.
		var decrements int64
		if err := cell.env.Pool.QueryRow(ctx, `SELECT 1000000000 - stock FROM bench_products WHERE sku = $1`, HotSKU).Scan(&decrements); err != nil {
			return m, err
		}
		if decrements > 0 {
			m.Attempts = float64(cell.w.Attempts.Load()) / float64(decrements)
		}
	}
	return m, nil
}

// NetLatency is the latency the network rows add in each direction.
const NetLatency = 500 * time.Microsecond

// openNetPool opens a pool on databaseURL through a proxy adding NetLatency each way.
func openNetPool(ctx context.Context, databaseURL string) (*harness.Proxy, *pgxpool.Pool, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return nil, nil, err
	}
	proxy, err := harness.StartProxy(u.Host)
	if err != nil {
		return nil, nil, err
	}
	proxy.SetLatency(NetLatency)
	u.Host = proxy.Addr
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		proxy.Close()
		return nil, nil, err
	}
	cfg.MaxConns = 40
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		proxy.Close()
		return nil, nil, err
	}
	return proxy, pool, nil
}
